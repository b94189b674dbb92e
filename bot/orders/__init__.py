"""Orders in a conversation: the CRM's status as an answer, the compensation the policy allows, the
order number said in an earlier message, and the order facts an operator's card shows."""

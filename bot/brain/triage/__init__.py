"""Triage: before any answer, what kind of message is this? Small talk, an escalation topic, in scope or not.

Entities (order numbers, phones, e-mails, amounts, dates) are slots, masked before embedding so they do
not blur what a message is about (bot.brain.triage.entities); small talk is answered from texts
(bot.brain.triage.smalltalk); escalation topics and off-topic examples are matched by meaning
(bot.brain.triage.examples); the open-set gate's thresholds are learned by `relaydesk tune`
(bot.brain.triage.calibration).
"""

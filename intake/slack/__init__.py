"""The Slack channel: customers in support channels and DMs, agents in the queue channels' threads."""

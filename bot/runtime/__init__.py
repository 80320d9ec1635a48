"""The running process: start-up, the update loop, the HTTP side server, ticks
and jobs, Telegram limits, replica coordination and the notifier."""

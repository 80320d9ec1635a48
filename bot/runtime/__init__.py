"""The running process: start-up, polling and the webhook listener, the HTTP
side server, ticks and jobs, Telegram limits, replica coordination and the
notification worker."""

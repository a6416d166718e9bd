"""The robot as a service: daemon, control socket, systemd notify, logs."""

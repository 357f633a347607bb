"""What the operating system gives a run: listening sockets and usable CPUs."""

"""Event-loop adapters: one module per loop, each naming a loop the servers set up per worker."""

"""The parent side of a run: plan, serve, bind, reload, supervise, log and record."""

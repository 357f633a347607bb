"""Load clients behind one interface: wrk (HTTP/1.1), h2load (HTTP/2), and an embedded Python client."""

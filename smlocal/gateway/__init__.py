"""HTTP: one port, routed by protocol. Translates wire ↔ service calls; holds no logic of its own."""

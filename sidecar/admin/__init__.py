"""The admin port: `server` (its life: start, serve, stop; signals are not its business),
`listener` (its accept loop), `protocol` (the bounded HTTP protocol and the connection cap),
`probes` (the probe fast path and the turns every other request waits for), `routes` (the admin
endpoints), `router` (their routing, requests and responses) and `events` (`GET /events`)."""

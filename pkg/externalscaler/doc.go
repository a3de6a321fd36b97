// Package externalscaler serves KEDA's external scaler gRPC protocol
// (externalscaler.proto, reproduced in ./proto) from any Swell source, so a
// KEDA installation can scale on Kafka consumer-group lag and ETA, Burrow,
// Redis, RabbitMQ, NATS JetStream, Prometheus or an HTTP JSON endpoint
// through one server, and so Azul scaler users can switch without changing
// their ScaledObjects.
//
// The pieces, in request order:
//
//   - Parser turns a ScaledObject's scalerMetadata into a Spec, once:
//     typed, validated, every error naming its key (gRPC InvalidArgument).
//     Credentials come only from `<key>FromEnv` (which KEDA resolves from
//     the scale target's environment before calling) or `<key>File` (a file
//     under the server's secrets directory), and are never logged.
//   - Tracker keeps one watcher per distinct measured target, shared by
//     every ScaledObject that names it: it polls in the background, caches
//     the last reading and tells streams when it changes. A target never
//     measured successfully, or failing for several polls in a row, is
//     Unavailable: KEDA then applies its fallback instead of seeing a fake
//     zero.
//   - Service implements the rpcs from the Tracker's cache; Serve adds TLS,
//     health, Prometheus metrics and a graceful stop.
//
// Kafka lag and the ETA rule are pure functions (SumLag, ETASeconds,
// AzulBacklog) so they are tested and benchmarked apart from any broker.
package externalscaler

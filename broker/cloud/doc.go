// Package cloud is the broker's connection to AWS IoT (coreThing.iotHost)
// and the spooler in front of it: v1's GGCloudSpooler.
//
// # Connection
//
// MQTT 3.1.1 with eclipse paho (github.com/eclipse/paho.mqtt.golang), mutual
// TLS with the core certificate (crypto.principals.IoTCertificate, else
// DIR/certs/core.cert.pem) and crypto.caPath as the root (the system roots
// when it is absent), ALPN x-amzn-mqtt-ca on port 443, keepAlive and
// mqttOperationTimeout from config.json. Every connection is its own
// reconnect loop with exponential backoff from 0.5 s, jitter over the upper
// half, capped at mqttMaxConnectionRetryInterval; a connection that lasted
// 30 s or got a PUBACK restarts the backoff. coreThing.networkProxy is
// honoured: an HTTP CONNECT tunnel (http:// or https:// proxy, basic auth,
// noProxyAddresses by host, domain or CIDR).
//
// The primary connection (client id = the core's thing name) publishes and
// holds the first 50 subscriptions; further subscriptions go 50 per
// connection to <thing>-c00, <thing>-c01, ... (v1's scheme, at most 250).
// AtMostOnce subscribes at QoS 0 with clean sessions; AtLeastOncePersistent
// at QoS 1 with persistent sessions on every connection. Subscriptions are
// made again on every connection. A persistent session can keep filters of
// an earlier run; what they bring in still goes through the router's table.
//
// # Sending
//
// Publish only appends to the spool. One sender goroutine publishes at QoS
// 1 in Seq order with up to MaxInflight awaiting their PUBACK, and acks the
// spool as PUBACKs return. After a failure everything unacked goes again in
// order (at least once, order per topic kept). A message that keeps failing
// on its own is dropped after 5 attempts and counted (see send).
//
// # Spool
//
// Memory keeps the queue in memory. FileSystem keeps it in
// DIR/data/broker/spool as segment files (segment.go has the record
// format): every Put is written and fsynced before it returns, and Puts that
// arrive during an fsync share the next one (group commit). Acks and drops
// are appended as records too and fsynced by the next Put, within a second
// by a background flush, and on Close: a power cut can bring back up to a
// second of acked messages (delivered twice), never lose an accepted one;
// killing the process loses nothing written. On open, a record that is short
// or fails its CRC32C ends its segment, which is truncated there; segments
// whose messages are all acked are deleted oldest first.
//
// # Locks
//
// Cloud.mu (links, subjects, lifecycle) and Cloud.spoolMu (the spool and
// its settings) are never held together. Within them: Cloud.mu, then
// link.mu; Cloud.spoolMu, then spool.syncMu, then spool.mu.
package cloud

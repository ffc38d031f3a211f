// Package broker is `ggd broker`: the local MQTT server for client devices,
// the managed-subscription router and the cloud connection with its spooler.
//
// Service is the daemon. It owns one routing path, Service.route, which
// every message takes whatever its source (a device over MQTT, a function
// or connector from the runtime, the shadow service, the cloud, a gRPC
// Publish): the table in force names the targets, and each target gets the
// message once, over MQTT (devices), the bus (functions, connectors, the
// shadow service) or the cloud connection. See README.md.
package broker

// Package broker is `ggd broker`: the local MQTT server for client devices,
// the managed-subscription router and the cloud connection with its spooler.
package broker

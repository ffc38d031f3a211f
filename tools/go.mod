module github.com/evergreen-edge/evergreen/tools

go 1.26.8

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/evergreen-edge/evergreen/proto v0.0.0-00010101000000-000000000000
	github.com/evergreen-edge/evergreen/services/kit v0.0.0-00010101000000-000000000000
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
)

replace github.com/evergreen-edge/evergreen/proto => ../proto

replace github.com/evergreen-edge/evergreen/services/kit => ../services/kit

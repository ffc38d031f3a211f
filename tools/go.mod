module github.com/evergreen-edge/evergreen/tools

go 1.26.8

require (
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

module github.com/evergreen-edge/evergreen/examples/echo-go

go 1.26.8

require github.com/evergreen-edge/evergreen/runtime v0.0.0-00010101000000-000000000000

replace github.com/evergreen-edge/evergreen/runtime => ../../runtime

replace github.com/evergreen-edge/evergreen/proto => ../../proto

replace github.com/evergreen-edge/evergreen/services/kit => ../../services/kit

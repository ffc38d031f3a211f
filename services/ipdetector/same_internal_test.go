package ipdetector

import (
	"testing"

	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"google.golang.org/protobuf/proto"
)

// sameConnectivity decides as proto.Equal does, field by field.
func TestSameConnectivityAgreesWithProtoEqual(t *testing.T) {
	info := func(id, host string, port uint32, meta string) *ipdetectorv1.ConnectivityInfo {
		return &ipdetectorv1.ConnectivityInfo{Id: id, HostAddress: host, PortNumber: port, Metadata: meta}
	}
	base := func() *ipdetectorv1.Connectivity {
		return &ipdetectorv1.Connectivity{Info: []*ipdetectorv1.ConnectivityInfo{info("a", "10.0.0.1", 8883, ""), info("b", "h", 1, "m")}}
	}
	cases := []*ipdetectorv1.Connectivity{
		nil, {}, base(),
		{Info: base().Info[:1]},
		{Info: []*ipdetectorv1.ConnectivityInfo{info("a", "10.0.0.1", 8883, ""), info("B", "h", 1, "m")}},
		{Info: []*ipdetectorv1.ConnectivityInfo{info("a", "10.0.0.2", 8883, ""), info("b", "h", 1, "m")}},
		{Info: []*ipdetectorv1.ConnectivityInfo{info("a", "10.0.0.1", 8884, ""), info("b", "h", 1, "m")}},
		{Info: []*ipdetectorv1.ConnectivityInfo{info("a", "10.0.0.1", 8883, ""), info("b", "h", 1, "")}},
		{Info: []*ipdetectorv1.ConnectivityInfo{info("b", "h", 1, "m"), info("a", "10.0.0.1", 8883, "")}},
	}
	for i, a := range cases {
		for j, b := range cases {
			if got, want := sameConnectivity(a, b), proto.Equal(a, b); got != want {
				t.Errorf("cases %d and %d: sameConnectivity %v, proto.Equal %v", i, j, got, want)
			}
		}
		if c := base(); !sameConnectivity(c, base()) {
			t.Errorf("equal copies differ")
		}
	}
}

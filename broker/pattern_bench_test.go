package broker

import (
	"fmt"
	"testing"

	"github.com/evergreen-edge/evergreen/broker/router"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The two ways DESIGN.md gives to route by (source, subject, target) on
// top of mochi differ in what each message costs to match: measured here on
// mochi's own topic index and our routing table, with the devices'
// subscriptions stored the way each pattern stores them. One sensor sends
// to one device out of n; everyone also subscribes to a broadcast topic,
// and with wide=true every device subscribes to '#' as well.
//
//	origin in topic:   index.Subscribers("$route/<src>/T"), then one
//	                   table.Allowed per subscriber found
//	target namespaces: table.Route(src, T), then one
//	                   index.Subscribers("$gg/<target>/T") per target
//
// go test -run - -bench Pattern ./broker (results in README.md).
func BenchmarkPattern(b *testing.B) {
	for _, n := range []int{50, 1000} {
		for _, wide := range []bool{false, true} {
			idxA, idxB := mochi.NewTopicsIndex(), mochi.NewTopicsIndex()
			g := &groupdef.Group{Subscriptions: &groupdef.SubscriptionDefinitionVersion{}}
			for i := range n {
				dev := fmt.Sprintf("dev-%d", i)
				filters := []string{"cmd/" + dev + "/#", "all/#"}
				if wide {
					filters = append(filters, "#")
				}
				for _, f := range filters {
					idxA.Subscribe(dev, packets.Subscription{Filter: "$route/+/" + f})
					idxB.Subscribe(dev, packets.Subscription{Filter: "$gg/" + dev + "/" + f})
				}
				g.Subscriptions.Subscriptions = append(g.Subscriptions.Subscriptions,
					groupdef.Subscription{Id: dev, Source: thingARN("sensor"), Subject: "cmd/" + dev + "/#", Target: thingARN(dev)})
			}
			table, err := router.Compile(g)
			if err != nil {
				b.Fatal(err)
			}
			src := router.Device("sensor")
			const target = "dev-7"
			topic := "cmd/" + target + "/set"
			name := fmt.Sprintf("devices=%d/hash=%v", n, wide)

			b.Run(name+"/origin-in-topic", func(b *testing.B) {
				delivered := 0
				for b.Loop() {
					subs := idxA.Subscribers("$route/" + src.Name + "/" + topic)
					for id := range subs.Subscriptions {
						if table.Allowed(src, router.Device(id), topic) {
							delivered++
						}
					}
				}
				if delivered != b.N {
					b.Fatalf("delivered %d for %d messages", delivered, b.N)
				}
			})
			b.Run(name+"/target-namespaces", func(b *testing.B) {
				delivered := 0
				for b.Loop() {
					table.Route(src, topic, func(dst router.Endpoint) {
						delivered += len(idxB.Subscribers("$gg/" + dst.Name + "/" + topic).Subscriptions)
					})
				}
				if delivered != b.N {
					b.Fatalf("delivered %d for %d messages", delivered, b.N)
				}
			})
		}
	}
}

package doc

import (
	"fmt"
	"strings"
	"testing"
)

// Conformance cases come from the AWS IoT Developer Guide: device-shadow-document
// (arrays, empty sections, client token), device-shadow-data-flow (optimistic
// locking, deleting properties and shadows), using-device-shadows (the
// simulation's captured accepted/delta/documents messages, the older guide's
// delta-state and deleting-data examples), device-shadow-mqtt (delta rules),
// device-shadow-error-messages (every 4xx message), diagnosing-shadows (size
// limit, fields outside the sections), and the spec section 6.

// step is one request. A step with an empty want is setup: it must be
// accepted and nothing else is checked. Otherwise want is the response
// (accepted, get or delete payload, or the error document), delta the
// /update/delta payload ("" means none may be published), and documents,
// when set, the /update/documents payload.
type step struct {
	op        string // "update", "get" or "delete"
	at        int64
	payload   string
	want      string
	delta     string
	documents string
	lim       Limits
}

type conformanceCase struct {
	name  string
	start Shadow
	steps []step
	// final, when set, is Document() after the last step at time finalAt;
	// "null" means no document (the shadow does not exist).
	final   string
	finalAt int64
}

const thing = "thing"

func upd(sec int64, payload string) step { return step{op: "update", at: sec, payload: payload} }

func rejected(sec int64, payload string, code int, msg, token string) step {
	tok := ""
	if token != "" {
		tok = fmt.Sprintf(`,"clientToken":%q`, token)
	}
	return step{op: "update", at: sec, payload: payload,
		want: fmt.Sprintf(`{"code":%d,"message":%q,"timestamp":%d%s}`, code, msg, sec, tok)}
}

func nested(levels int, leaf string) string {
	var b strings.Builder
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, `{"l%d":`, i)
	}
	b.WriteString(leaf)
	b.WriteString(strings.Repeat("}", levels))
	return b.String()
}

func conformanceCases() []conformanceCase {
	const (
		simToken1 = "426bfd96-e720-46d3-95cd-014e3ef12bb6"
		simToken2 = "21b21b21-bfd2-4279-8c65-e2f697ff4fab"
		simToken3 = "a4dc2227-9213-4c6a-a6a5-053304f60258"
	)
	tok64 := strings.Repeat("t", 64)
	tok65 := strings.Repeat("t", 65)
	// {"k":"xxx"} is 8 bytes of JSON plus the string.
	fill := func(n int) string { return strings.Repeat("x", n-8) }

	return []conformanceCase{
		// using-device-shadows: the simulation, replayed with its captured messages.
		{
			name:  "simulation: device creates shadow, reported array metadata per element",
			start: Shadow{Version: 2},
			steps: []step{{
				op: "update", at: 1591140517,
				payload: `{"state":{"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}},"clientToken":"` + simToken1 + `"}`,
				want: `{"state":{"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}},
					"metadata":{"reported":{"ID":{"timestamp":1591140517},"ColorRGB":[{"timestamp":1591140517},{"timestamp":1591140517},{"timestamp":1591140517}]}},
					"version":3,"timestamp":1591140517,"clientToken":"` + simToken1 + `"}`,
				documents: `{"previous":null,
					"current":{"state":{"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}},
						"metadata":{"reported":{"ID":{"timestamp":1591140517},"ColorRGB":[{"timestamp":1591140517},{"timestamp":1591140517},{"timestamp":1591140517}]}},
						"version":3},
					"timestamp":1591140517,"clientToken":"` + simToken1 + `"}`,
			}, {
				op: "get", at: 1591141111,
				want: `{"state":{"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}},
					"metadata":{"reported":{"ID":{"timestamp":1591140517},"ColorRGB":[{"timestamp":1591140517},{"timestamp":1591140517},{"timestamp":1591140517}]}},
					"version":3,"timestamp":1591141111}`,
			}},
		},
		{
			name:  "simulation: app sets desired, delta published with desired metadata",
			start: Shadow{Version: 2},
			steps: []step{
				upd(1591140517, `{"state":{"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}}}`),
				{
					op: "update", at: 1591141596,
					payload: `{"state":{"desired":{"ColorRGB":[255,255,0]}},"clientToken":"` + simToken2 + `"}`,
					want: `{"state":{"desired":{"ColorRGB":[255,255,0]}},
						"metadata":{"desired":{"ColorRGB":[{"timestamp":1591141596},{"timestamp":1591141596},{"timestamp":1591141596}]}},
						"version":4,"timestamp":1591141596,"clientToken":"` + simToken2 + `"}`,
					delta: `{"version":4,"timestamp":1591141596,"state":{"ColorRGB":[255,255,0]},
						"metadata":{"ColorRGB":[{"timestamp":1591141596},{"timestamp":1591141596},{"timestamp":1591141596}]},
						"clientToken":"` + simToken2 + `"}`,
				},
			},
		},
		{
			name:  "simulation: device reports the desired colour, documents has previous and current",
			start: Shadow{Version: 2},
			steps: []step{
				upd(1591140517, `{"state":{"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}}}`),
				upd(1591141596, `{"state":{"desired":{"ColorRGB":[255,255,0]}}}`),
				{
					op: "update", at: 1591142747,
					payload: `{"state":{"reported":{"ColorRGB":[255,255,0]}},"clientToken":"` + simToken3 + `"}`,
					want: `{"state":{"reported":{"ColorRGB":[255,255,0]}},
						"metadata":{"reported":{"ColorRGB":[{"timestamp":1591142747},{"timestamp":1591142747},{"timestamp":1591142747}]}},
						"version":5,"timestamp":1591142747,"clientToken":"` + simToken3 + `"}`,
					documents: `{
					  "previous":{"state":{"desired":{"ColorRGB":[255,255,0]},"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}},
					    "metadata":{"desired":{"ColorRGB":[{"timestamp":1591141596},{"timestamp":1591141596},{"timestamp":1591141596}]},
					      "reported":{"ID":{"timestamp":1591140517},"ColorRGB":[{"timestamp":1591140517},{"timestamp":1591140517},{"timestamp":1591140517}]}},
					    "version":4},
					  "current":{"state":{"desired":{"ColorRGB":[255,255,0]},"reported":{"ID":"SmartLamp21","ColorRGB":[255,255,0]}},
					    "metadata":{"desired":{"ColorRGB":[{"timestamp":1591141596},{"timestamp":1591141596},{"timestamp":1591141596}]},
					      "reported":{"ID":{"timestamp":1591140517},"ColorRGB":[{"timestamp":1591142747},{"timestamp":1591142747},{"timestamp":1591142747}]}},
					    "version":5},
					  "timestamp":1591142747,"clientToken":"` + simToken3 + `"}`,
				},
			},
			final: `{"state":{"desired":{"ColorRGB":[255,255,0]},"reported":{"ID":"SmartLamp21","ColorRGB":[255,255,0]}},
				"metadata":{"desired":{"ColorRGB":[{"timestamp":1591141596},{"timestamp":1591141596},{"timestamp":1591141596}]},
				  "reported":{"ID":{"timestamp":1591140517},"ColorRGB":[{"timestamp":1591142747},{"timestamp":1591142747},{"timestamp":1591142747}]}},
				"version":5,"timestamp":1591143000}`,
			finalAt: 1591143000,
		},

		// Merge (older guide "Updating a Shadow", data flow).
		{
			name: "merge: desired update leaves reported untouched",
			steps: []step{
				upd(1000, `{"state":{"reported":{"color":{"r":255,"g":255,"b":0}}}}`),
				{
					op: "update", at: 2000,
					payload: `{"state":{"desired":{"color":{"r":10},"engine":"ON"}}}`,
					want: `{"state":{"desired":{"color":{"r":10},"engine":"ON"}},
						"metadata":{"desired":{"color":{"r":{"timestamp":2000}},"engine":{"timestamp":2000}}},
						"version":2,"timestamp":2000}`,
					delta: `{"state":{"color":{"r":10},"engine":"ON"},
						"metadata":{"color":{"r":{"timestamp":2000}},"engine":{"timestamp":2000}},
						"version":2,"timestamp":2000}`,
				},
			},
			final: `{"state":{"desired":{"color":{"r":10},"engine":"ON"},"reported":{"color":{"r":255,"g":255,"b":0}},
					"delta":{"color":{"r":10},"engine":"ON"}},
				"metadata":{"desired":{"color":{"r":{"timestamp":2000}},"engine":{"timestamp":2000}},
					"reported":{"color":{"r":{"timestamp":1000},"g":{"timestamp":1000},"b":{"timestamp":1000}}},
					"delta":{"color":{"r":{"timestamp":2000}},"engine":{"timestamp":2000}}},
				"version":2,"timestamp":3000}`,
			finalAt: 3000,
		},
		{
			name: "merge: device reports the desired values, delta clears",
			steps: []step{
				upd(1000, `{"state":{"reported":{"color":{"r":255,"g":255,"b":0}}}}`),
				upd(2000, `{"state":{"desired":{"color":{"r":10},"engine":"ON"}}}`),
				{
					op: "update", at: 3000,
					payload: `{"state":{"reported":{"color":{"r":10},"engine":"ON"}}}`,
					want: `{"state":{"reported":{"color":{"r":10},"engine":"ON"}},
						"metadata":{"reported":{"color":{"r":{"timestamp":3000}},"engine":{"timestamp":3000}}},
						"version":3,"timestamp":3000}`,
				},
			},
			final: `{"state":{"desired":{"color":{"r":10},"engine":"ON"},"reported":{"color":{"r":10,"g":255,"b":0},"engine":"ON"}},
				"metadata":{"desired":{"color":{"r":{"timestamp":2000}},"engine":{"timestamp":2000}},
					"reported":{"color":{"r":{"timestamp":3000},"g":{"timestamp":1000},"b":{"timestamp":1000}},"engine":{"timestamp":3000}}},
				"version":3,"timestamp":4000}`,
			finalAt: 4000,
		},
		{
			name: "nested merge: three levels, siblings kept, only sent leaves get the new timestamp",
			steps: []step{
				upd(1000, `{"state":{"desired":{"lights":{"color":"RED","level":{"now":5,"max":9}},"fan":1}}}`),
				upd(2000, `{"state":{"desired":{"lights":{"level":{"now":7}}}}}`),
			},
			final: `{"state":{"desired":{"lights":{"color":"RED","level":{"now":7,"max":9}},"fan":1},
					"delta":{"lights":{"color":"RED","level":{"now":7,"max":9}},"fan":1}},
				"metadata":{"desired":{"lights":{"color":{"timestamp":1000},"level":{"now":{"timestamp":2000},"max":{"timestamp":1000}}},"fan":{"timestamp":1000}},
					"delta":{"lights":{"color":{"timestamp":1000},"level":{"now":{"timestamp":2000},"max":{"timestamp":1000}}},"fan":{"timestamp":1000}}},
				"version":2,"timestamp":3000}`,
			finalAt: 3000,
		},
		{
			name: "metadata: a leaf sent again with the same value gets a new timestamp",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":1,"b":2}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"reported":{"a":1}}}`,
					want: `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
				},
			},
			final: `{"state":{"reported":{"a":1,"b":2}},
				"metadata":{"reported":{"a":{"timestamp":2000},"b":{"timestamp":1000}}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "merge: scalar replaced by object and object by scalar, metadata follows the shape",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":5,"b":{"c":1}}}}`),
				upd(2000, `{"state":{"reported":{"a":{"x":true},"b":"flat"}}}`),
			},
			final: `{"state":{"reported":{"a":{"x":true},"b":"flat"}},
				"metadata":{"reported":{"a":{"x":{"timestamp":2000}},"b":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "merge: desired and reported in one request",
			steps: []step{{
				op: "update", at: 1000,
				payload: `{"state":{"desired":{"color":"RED"},"reported":{"color":"GREEN"}}}`,
				want: `{"state":{"desired":{"color":"RED"},"reported":{"color":"GREEN"}},
					"metadata":{"desired":{"color":{"timestamp":1000}},"reported":{"color":{"timestamp":1000}}},
					"version":1,"timestamp":1000}`,
				delta:     `{"state":{"color":"RED"},"metadata":{"color":{"timestamp":1000}},"version":1,"timestamp":1000}`,
				documents: `{"previous":null,"current":{"state":{"desired":{"color":"RED"},"reported":{"color":"GREEN"}},"metadata":{"desired":{"color":{"timestamp":1000}},"reported":{"color":{"timestamp":1000}}},"version":1},"timestamp":1000}`,
			}},
		},
		{
			name: "merge: fields outside state are ignored",
			steps: []step{{
				op: "update", at: 1000,
				payload: `{"state":{"reported":{"t":55}},"metadata":{"reported":{"t":{"timestamp":1}}},"timestamp":5,"extra":[1,2]}`,
				want:    `{"state":{"reported":{"t":55}},"metadata":{"reported":{"t":{"timestamp":1000}}},"version":1,"timestamp":1000}`,
			}},
		},

		// Delta (device-shadow-document delta state, device-shadow-mqtt delta rules).
		{
			name: "delta: fields only in reported never appear, desired metadata is the delta metadata",
			steps: []step{
				upd(12345, `{"state":{"desired":{"color":"RED","state":"STOP"},"reported":{"color":"GREEN","engine":"ON"}}}`),
				{
					op: "get", at: 123456789,
					want: `{"state":{"desired":{"color":"RED","state":"STOP"},"reported":{"color":"GREEN","engine":"ON"},
							"delta":{"color":"RED","state":"STOP"}},
						"metadata":{"desired":{"color":{"timestamp":12345},"state":{"timestamp":12345}},
							"reported":{"color":{"timestamp":12345},"engine":{"timestamp":12345}},
							"delta":{"color":{"timestamp":12345},"state":{"timestamp":12345}}},
						"version":1,"timestamp":123456789}`,
				},
			},
		},
		{
			name: "delta: nested difference keeps the path to the root",
			steps: []step{
				upd(1000, `{"state":{"reported":{"lights":{"color":{"r":255,"g":0,"b":255}}}}}`),
				{
					op: "update", at: 2000,
					payload: `{"state":{"desired":{"lights":{"color":{"r":255,"g":255,"b":255}}}}}`,
					want: `{"state":{"desired":{"lights":{"color":{"r":255,"g":255,"b":255}}}},
						"metadata":{"desired":{"lights":{"color":{"r":{"timestamp":2000},"g":{"timestamp":2000},"b":{"timestamp":2000}}}}},
						"version":2,"timestamp":2000}`,
					delta: `{"state":{"lights":{"color":{"g":255}}},"metadata":{"lights":{"color":{"g":{"timestamp":2000}}}},"version":2,"timestamp":2000}`,
				},
			},
		},
		{
			name: "delta: arrays compared whole, the entire desired array is the delta",
			steps: []step{
				upd(1000, `{"state":{"reported":{"colors":["RED","GREEN"]}}}`),
				{
					op: "update", at: 2000,
					payload: `{"state":{"desired":{"colors":["RED","GREEN","BLUE"]}}}`,
					want: `{"state":{"desired":{"colors":["RED","GREEN","BLUE"]}},
						"metadata":{"desired":{"colors":[{"timestamp":2000},{"timestamp":2000},{"timestamp":2000}]}},"version":2,"timestamp":2000}`,
					delta: `{"state":{"colors":["RED","GREEN","BLUE"]},
						"metadata":{"colors":[{"timestamp":2000},{"timestamp":2000},{"timestamp":2000}]},"version":2,"timestamp":2000}`,
				},
			},
		},
		{
			name: "delta: equal arrays produce no delta",
			steps: []step{
				upd(1000, `{"state":{"reported":{"colors":["RED",{"x":1}]}}}`),
				{
					op: "update", at: 2000,
					payload: `{"state":{"desired":{"colors":["RED",{"x":1}]}}}`,
					want: `{"state":{"desired":{"colors":["RED",{"x":1}]}},
						"metadata":{"desired":{"colors":[{"timestamp":2000},{"x":{"timestamp":2000}}]}},"version":2,"timestamp":2000}`,
				},
			},
			final: `{"state":{"desired":{"colors":["RED",{"x":1}]},"reported":{"colors":["RED",{"x":1}]}},
				"metadata":{"desired":{"colors":[{"timestamp":2000},{"x":{"timestamp":2000}}]},"reported":{"colors":[{"timestamp":1000},{"x":{"timestamp":1000}}]}},
				"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "delta: field deleted from reported but still desired is included",
			steps: []step{
				upd(1000, `{"state":{"desired":{"engine":"ON","color":"RED"},"reported":{"engine":"ON","color":"RED"}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"reported":{"engine":null}}}`,
					want:  `{"state":{"reported":{"engine":null}},"metadata":{"reported":{"engine":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
					delta: `{"state":{"engine":"ON"},"metadata":{"engine":{"timestamp":1000}},"version":2,"timestamp":2000}`,
				},
			},
		},
		{
			name: "delta: published on a reported update that leaves desired and reported different",
			steps: []step{
				upd(1000, `{"state":{"desired":{"on":true},"reported":{"on":true}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"reported":{"on":false}},"clientToken":"dev"}`,
					want:  `{"state":{"reported":{"on":false}},"metadata":{"reported":{"on":{"timestamp":2000}}},"version":2,"timestamp":2000,"clientToken":"dev"}`,
					delta: `{"state":{"on":true},"metadata":{"on":{"timestamp":1000}},"version":2,"timestamp":2000,"clientToken":"dev"}`,
				},
			},
		},
		{
			name: "delta: desired object against reported scalar is the whole desired object",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":5}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"desired":{"a":{"b":1}}}}`,
					want:  `{"state":{"desired":{"a":{"b":1}}},"metadata":{"desired":{"a":{"b":{"timestamp":2000}}}},"version":2,"timestamp":2000}`,
					delta: `{"state":{"a":{"b":1}},"metadata":{"a":{"b":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
				},
			},
		},
		{
			name: "delta: numbers compare by value yet keep their spelling",
			steps: []step{
				upd(1000, `{"state":{"reported":{"temp":1.5,"big":12345678901234567890123,"e":100}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"desired":{"temp":1.50,"big":12345678901234567890123,"e":1e2}}}`,
					want: `{"state":{"desired":{"temp":1.50,"big":12345678901234567890123,"e":1e2}},
						"metadata":{"desired":{"temp":{"timestamp":2000},"big":{"timestamp":2000},"e":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
				},
			},
			final: `{"state":{"desired":{"temp":1.50,"big":12345678901234567890123,"e":1e2},"reported":{"temp":1.5,"big":12345678901234567890123,"e":100}},
				"metadata":{"desired":{"temp":{"timestamp":2000},"big":{"timestamp":2000},"e":{"timestamp":2000}},
					"reported":{"temp":{"timestamp":1000},"big":{"timestamp":1000},"e":{"timestamp":1000}}},
				"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "delta: string and number of the same text differ",
			steps: []step{
				upd(1000, `{"state":{"reported":{"v":"1"}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"desired":{"v":1}}}`,
					want:  `{"state":{"desired":{"v":1}},"metadata":{"desired":{"v":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
					delta: `{"state":{"v":1},"metadata":{"v":{"timestamp":2000}},"version":2,"timestamp":2000}`,
				},
			},
		},

		// Versions (data flow: optimistic locking; deleting a shadow).
		{
			name: "version: increments by one per accepted update",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":1}}}`),
				upd(1001, `{"state":{"reported":{"a":2}}}`),
				{
					op: "update", at: 1002, payload: `{"state":{"reported":{"a":3}}}`,
					want: `{"state":{"reported":{"a":3}},"metadata":{"reported":{"a":{"timestamp":1002}}},"version":3,"timestamp":1002}`,
				},
			},
		},
		{
			name: "version: an update that changes nothing still increments",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":1}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"reported":{"a":1}}}`,
					want: `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
					documents: `{"previous":{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":1000}}},"version":1},
						"current":{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":2000}}},"version":2},"timestamp":2000}`,
				},
			},
		},
		{
			name:  "version: matching version is accepted (optimistic locking example)",
			start: Shadow{Version: 9},
			steps: []step{
				upd(1000, `{"state":{"desired":{"colors":["RED","GREEN","BLUE"]}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"desired":{"colors":["BLUE"]}},"version":10}`,
					want:  `{"state":{"desired":{"colors":["BLUE"]}},"metadata":{"desired":{"colors":[{"timestamp":2000}]}},"version":11,"timestamp":2000}`,
					delta: `{"state":{"colors":["BLUE"]},"metadata":{"colors":[{"timestamp":2000}]},"version":11,"timestamp":2000}`,
				},
			},
		},
		{
			name:  "version: older version is a 409 with the client token, shadow unchanged",
			start: Shadow{Version: 9},
			steps: []step{
				upd(1000, `{"state":{"desired":{"colors":["RED","GREEN","BLUE"]}}}`),
				rejected(2000, `{"state":{"desired":{"colors":["BLUE"]}},"version":9,"clientToken":"426bfd96-e720-46d3-95cd-014e3ef12bb6"}`,
					409, "Version conflict", "426bfd96-e720-46d3-95cd-014e3ef12bb6"),
			},
			final: `{"state":{"desired":{"colors":["RED","GREEN","BLUE"]},"delta":{"colors":["RED","GREEN","BLUE"]}},
				"metadata":{"desired":{"colors":[{"timestamp":1000},{"timestamp":1000},{"timestamp":1000}]},
					"delta":{"colors":[{"timestamp":1000},{"timestamp":1000},{"timestamp":1000}]}},
				"version":10,"timestamp":3000}`,
			finalAt: 3000,
		},
		{
			name: "version: a new shadow is at version 0",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"reported":{"a":1}},"version":0}`,
				want: `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":1000}}},"version":1,"timestamp":1000}`,
			}},
		},
		{
			name:  "version: a string version is invalid",
			steps: []step{rejected(1000, `{"state":{"reported":{"a":1}},"version":"5","clientToken":"c"}`, 400, "Invalid version", "c")},
		},
		{
			name:  "version: a fractional version is invalid",
			steps: []step{rejected(1000, `{"state":{"reported":{"a":1}},"version":1.5}`, 400, "Invalid version", "")},
		},
		{
			name:  "version: a negative version is invalid",
			steps: []step{rejected(1000, `{"state":{"reported":{"a":1}},"version":-1}`, 400, "Invalid version", "")},
		},

		// Client tokens (device-shadow-document "Client tokens").
		{
			name: "clientToken: 64 bytes is accepted and echoed",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"reported":{"a":1}},"clientToken":"` + tok64 + `"}`,
				want: `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":1000}}},"version":1,"timestamp":1000,"clientToken":"` + tok64 + `"}`,
				documents: `{"previous":null,"current":{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":1000}}},"version":1},
					"timestamp":1000,"clientToken":"` + tok64 + `"}`,
			}},
		},
		{
			name:  "clientToken: 65 bytes is a 400 Invalid clientToken",
			steps: []step{rejected(1000, `{"state":{"reported":{"a":1}},"clientToken":"`+tok65+`"}`, 400, "Invalid clientToken", "")},
			final: "null",
		},
		{
			name:  "clientToken: a number is a 400 Invalid clientToken",
			steps: []step{rejected(1000, `{"state":{"reported":{"a":1}},"clientToken":42}`, 400, "Invalid clientToken", "")},
		},
		{
			name: "clientToken: echoed on get and delete",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":1}}}`),
				{op: "get", at: 2000, payload: `{"clientToken":"g1"}`,
					want: `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":1000}}},"version":1,"timestamp":2000,"clientToken":"g1"}`},
				{op: "delete", at: 3000, payload: `{"clientToken":"d1"}`, want: `{"version":1,"timestamp":3000,"clientToken":"d1"}`},
			},
			final: "null",
		},

		// Nulls (data flow "Deleting shadow data", older guide "Deleting Data").
		{
			name: "null: a leaf set to null is removed",
			steps: []step{
				upd(1000, `{"state":{"desired":{"color":"RED","engine":"ON"}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"desired":{"engine":null}}}`,
					want:  `{"state":{"desired":{"engine":null}},"metadata":{"desired":{"engine":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
					delta: `{"state":{"color":"RED"},"metadata":{"color":{"timestamp":1000}},"version":2,"timestamp":2000}`,
				},
			},
			final: `{"state":{"desired":{"color":"RED"},"delta":{"color":"RED"}},
				"metadata":{"desired":{"color":{"timestamp":1000}},"delta":{"color":{"timestamp":1000}}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "null: an object set to null is removed with its subtree and metadata",
			steps: []step{
				upd(1000, `{"state":{"reported":{"lights":{"color":"RED","level":3},"fan":1}}}`),
				upd(2000, `{"state":{"reported":{"lights":null}}}`),
			},
			final:   `{"state":{"reported":{"fan":1}},"metadata":{"reported":{"fan":{"timestamp":1000}}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "null: desired null removes the section (older guide deleting-data example)",
			steps: []step{
				upd(1000, `{"state":{"desired":{"lights":{"color":"RED"},"engine":"ON"},"reported":{"lights":{"color":"GREEN"},"engine":"OFF"}}}`),
				{
					op: "update", at: 2000, payload: `{"state":{"desired":null,"reported":{"engine":null}}}`,
					want: `{"state":{"desired":null,"reported":{"engine":null}},
						"metadata":{"desired":{"timestamp":2000},"reported":{"engine":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
				},
			},
			final: `{"state":{"reported":{"lights":{"color":"GREEN"}}},"metadata":{"reported":{"lights":{"color":{"timestamp":1000}}}},
				"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "null: removing the desired section while reporting (empty-sections example)",
			steps: []step{
				upd(1000, `{"state":{"desired":{"color":"red"}}}`),
				upd(2000, `{"state":{"reported":{"color":"red"},"desired":null}}`),
			},
			final:   `{"state":{"reported":{"color":"red"}},"metadata":{"reported":{"color":{"timestamp":2000}}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "null: state null clears everything but the shadow stays and versions continue",
			steps: []step{
				upd(1000, `{"state":{"desired":{"a":1},"reported":{"a":2}}}`),
				{
					op: "update", at: 2000, payload: `{"state":null,"clientToken":"z"}`,
					want: `{"state":null,"metadata":{"timestamp":2000},"version":2,"timestamp":2000,"clientToken":"z"}`,
					documents: `{"previous":{"state":{"desired":{"a":1},"reported":{"a":2}},
							"metadata":{"desired":{"a":{"timestamp":1000}},"reported":{"a":{"timestamp":1000}}},"version":1},
						"current":{"state":{},"metadata":{},"version":2},"timestamp":2000,"clientToken":"z"}`,
				},
				{op: "get", at: 3000, want: `{"state":{},"metadata":{},"version":2,"timestamp":3000}`},
				{
					op: "update", at: 4000, payload: `{"state":{"reported":{"b":1}}}`,
					want: `{"state":{"reported":{"b":1}},"metadata":{"reported":{"b":{"timestamp":4000}}},"version":3,"timestamp":4000}`,
				},
			},
		},
		{
			name: "null: deleting the last field removes the section",
			steps: []step{
				upd(1000, `{"state":{"desired":{"a":1},"reported":{"b":1}}}`),
				upd(2000, `{"state":{"desired":{"a":null}}}`),
			},
			final:   `{"state":{"reported":{"b":1}},"metadata":{"reported":{"b":{"timestamp":1000}}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "null: an object emptied by nulls is dropped",
			steps: []step{
				upd(1000, `{"state":{"reported":{"cfg":{"x":1},"y":2}}}`),
				upd(2000, `{"state":{"reported":{"cfg":{"x":null}}}}`),
			},
			final:   `{"state":{"reported":{"y":2}},"metadata":{"reported":{"y":{"timestamp":1000}}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name: "null: nulls for absent fields are accepted and echoed",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"reported":{"ghost":null,"a":1}}}`,
				want: `{"state":{"reported":{"ghost":null,"a":1}},"metadata":{"reported":{"ghost":{"timestamp":1000},"a":{"timestamp":1000}}},"version":1,"timestamp":1000}`,
			}},
			final:   `{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":1000}}},"version":1,"timestamp":1000}`,
			finalAt: 1000,
		},

		// Arrays (device-shadow-document "Array values").
		{
			name: "arrays: an update replaces the whole array",
			steps: []step{
				upd(1000, `{"state":{"desired":{"colors":["RED","GREEN","BLUE"]}}}`),
				upd(2000, `{"state":{"desired":{"colors":["RED"]}}}`),
			},
			final: `{"state":{"desired":{"colors":["RED"]},"delta":{"colors":["RED"]}},
				"metadata":{"desired":{"colors":[{"timestamp":2000}]},"delta":{"colors":[{"timestamp":2000}]}},"version":2,"timestamp":2000}`,
			finalAt: 2000,
		},
		{
			name:  "arrays: a null element is rejected",
			steps: []step{rejected(1000, `{"state":{"desired":{"colors":[null,"RED","GREEN"]}}}`, 400, "State contains an invalid node", "")},
			final: "null",
		},
		{
			name:  "arrays: a null inside an object inside an array is rejected",
			steps: []step{rejected(1000, `{"state":{"reported":{"list":[{"a":null}]}},"clientToken":"n"}`, 400, "State contains an invalid node", "n")},
		},
		{
			name: "arrays: objects inside arrays get nested metadata",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"reported":{"list":[{"a":1},[2,3]]}}}`,
				want: `{"state":{"reported":{"list":[{"a":1},[2,3]]}},
					"metadata":{"reported":{"list":[{"a":{"timestamp":1000}},[{"timestamp":1000},{"timestamp":1000}]]}},"version":1,"timestamp":1000}`,
			}},
		},

		// Empty documents (device-shadow-document "Empty shadow document properties").
		{
			name: "empty: an empty state is valid and creates an empty shadow",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{}}`,
				want:      `{"state":{},"metadata":{},"version":1,"timestamp":1000}`,
				documents: `{"previous":null,"current":{"state":{},"metadata":{},"version":1},"timestamp":1000}`,
			}},
			final:   `{"state":{},"metadata":{},"version":1,"timestamp":1000}`,
			finalAt: 1000,
		},
		{
			name: "empty: an empty desired object stores no section",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"desired":{}}}`,
				want: `{"state":{"desired":{}},"metadata":{"desired":{}},"version":1,"timestamp":1000}`,
			}},
			final:   `{"state":{},"metadata":{},"version":1,"timestamp":1000}`,
			finalAt: 1000,
		},

		// Errors (device-shadow-error-messages), in the order they are checked.
		{
			name:  "error: 415 for a payload that is not UTF-8",
			steps: []step{rejected(1000, "{\"state\":{\"reported\":{\"a\":\"\xff\"}},\"clientToken\":\"u\"}", 415, "Unsupported documented encoding; supported encoding is UTF-8", "")},
		},
		{
			name:  "error: encoding is checked before JSON",
			steps: []step{rejected(1000, "{\"state\":\xc3", 415, "Unsupported documented encoding; supported encoding is UTF-8", "")},
		},
		{
			name:  "error: truncated JSON",
			steps: []step{rejected(1000, `{"state":`, 400, "Invalid JSON", "")},
		},
		{
			name:  "error: empty payload is invalid JSON",
			steps: []step{rejected(1000, ``, 400, "Invalid JSON", "")},
		},
		{
			name:  "error: a top-level array is invalid JSON",
			steps: []step{rejected(1000, `[{"state":{}}]`, 400, "Invalid JSON", "")},
		},
		{
			name:  "error: data after the document is invalid JSON",
			steps: []step{rejected(1000, `{"state":{}} {"state":{}}`, 400, "Invalid JSON", "")},
		},
		{
			name:  "error: JSON validity is checked before the clientToken",
			steps: []step{rejected(1000, `{"clientToken":"`+tok65+`","state":{`, 400, "Invalid JSON", "")},
		},
		{
			name:  "error: clientToken is checked before version",
			steps: []step{rejected(1000, `{"clientToken":"`+tok65+`","version":"x","state":{}}`, 400, "Invalid clientToken", "")},
		},
		{
			name:  "error: missing state, token echoed",
			steps: []step{rejected(1000, `{"desired":{"a":1},"clientToken":"m"}`, 400, "Missing required node: state", "m")},
			final: "null",
		},
		{
			name:  "error: state that is a number",
			steps: []step{rejected(1000, `{"state":5}`, 400, "State node must be an object", "")},
		},
		{
			name:  "error: state that is an array",
			steps: []step{rejected(1000, `{"state":[{"desired":{}}]}`, 400, "State node must be an object", "")},
		},
		{
			name:  "error: desired that is a string",
			steps: []step{rejected(1000, `{"state":{"desired":"on"}}`, 400, "Desired node must be an object", "")},
		},
		{
			name:  "error: desired that is an array",
			steps: []step{rejected(1000, `{"state":{"desired":[1]}}`, 400, "Desired node must be an object", "")},
		},
		{
			name:  "error: reported that is a number",
			steps: []step{rejected(1000, `{"state":{"reported":7},"clientToken":"r"}`, 400, "Reported node must be an object", "r")},
		},
		{
			name:  "error: a client may not write delta",
			steps: []step{rejected(1000, `{"state":{"desired":{"a":1},"delta":{"a":1}}}`, 400, "State contains an invalid node", "")},
		},
		{
			name:  "error: unknown node under state",
			steps: []step{rejected(1000, `{"state":{"foo":{"a":1}}}`, 400, "State contains an invalid node", "")},
		},

		// Depth (error table: maximum is 6).
		{
			name: "depth: exactly 6 levels under desired is accepted",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"desired":` + nested(6, `1`) + `}}`,
				want:  `{"state":{"desired":` + nested(6, `1`) + `},"metadata":{"desired":` + nested(6, `{"timestamp":1000}`) + `},"version":1,"timestamp":1000}`,
				delta: `{"state":` + nested(6, `1`) + `,"metadata":` + nested(6, `{"timestamp":1000}`) + `,"version":1,"timestamp":1000}`,
			}},
		},
		{
			name:  "depth: 7 levels under reported is refused",
			steps: []step{rejected(1000, `{"state":{"reported":`+nested(7, `1`)+`},"clientToken":"d"}`, 400, "JSON contains too many levels of nesting; maximum is 6", "d")},
			final: "null",
		},
		{
			name: "depth: arrays count as levels, 6 accepted",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"reported":{"a":[[[[[1]]]]]}}}`,
				want: `{"state":{"reported":{"a":[[[[[1]]]]]}},"metadata":{"reported":{"a":[[[[[{"timestamp":1000}]]]]]}},"version":1,"timestamp":1000}`,
			}},
		},
		{
			name:  "depth: arrays count as levels, 7 refused",
			steps: []step{rejected(1000, `{"state":{"reported":{"a":[[[[[[1]]]]]]}}}`, 400, "JSON contains too many levels of nesting; maximum is 6", "")},
		},

		// Size (diagnosing-shadows: 8 KB of desired and reported, metadata excluded).
		{
			name: "size: desired of exactly 8192 bytes is accepted",
			steps: []step{{
				op: "update", at: 1000, payload: `{"state":{"desired":{"k":"` + fill(8192) + `"}}}`,
				want:  `{"state":{"desired":{"k":"` + fill(8192) + `"}},"metadata":{"desired":{"k":{"timestamp":1000}}},"version":1,"timestamp":1000}`,
				delta: `{"state":{"k":"` + fill(8192) + `"},"metadata":{"k":{"timestamp":1000}},"version":1,"timestamp":1000}`,
			}},
		},
		{
			name:  "size: 8193 bytes is a 413",
			steps: []step{rejected(1000, `{"state":{"desired":{"k":"`+fill(8193)+`"}},"clientToken":"s"}`, 413, "The payload exceeds the maximum size allowed", "s")},
			final: "null",
		},
		{
			name: "size: desired and reported count together, the stored result is measured",
			steps: []step{
				upd(1000, `{"state":{"reported":{"k":"`+fill(4096)+`"}}}`),
				upd(1001, `{"state":{"desired":{"k":"`+fill(4096)+`"}}}`),
				rejected(1002, `{"state":{"desired":{"k":"`+fill(4097)+`"}}}`, 413, "The payload exceeds the maximum size allowed", ""),
				upd(1003, `{"state":{"reported":null,"desired":{"k":"`+fill(8192)+`"}}}`),
			},
		},
		{
			name: "size: a configured limit is honoured",
			steps: []step{
				{op: "update", at: 1000, payload: `{"state":{"reported":{"k":"` + fill(20) + `"}}}`, lim: Limits{MaxStateBytes: 19},
					want: `{"code":413,"message":"The payload exceeds the maximum size allowed","timestamp":1000}`},
			},
		},

		// Get and delete (data flow "Retrieving", "Deleting a shadow").
		{
			name:  "get: a shadow that never existed is a 404",
			steps: []step{{op: "get", at: 1000, want: `{"code":404,"message":"No shadow exists with name: 'thing'","timestamp":1000}`}},
			final: "null",
		},
		{
			name: "get: a deleted shadow is a 404 and keeps the client token",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":1}}}`),
				{op: "delete", at: 2000, want: `{"version":1,"timestamp":2000}`},
				{op: "get", at: 3000, payload: `{"clientToken":"x"}`,
					want: `{"code":404,"message":"No shadow exists with name: 'thing'","timestamp":3000,"clientToken":"x"}`},
			},
			final: "null",
		},
		{
			name:  "delete: a shadow that does not exist is a 404",
			steps: []step{{op: "delete", at: 1000, payload: `{"clientToken":"q"}`, want: `{"code":404,"message":"No shadow exists with name: 'thing'","timestamp":1000,"clientToken":"q"}`}},
		},
		{
			name: "delete: the next update continues the numbering and has no previous",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":1}}}`),
				upd(1001, `{"state":{"reported":{"a":2}}}`),
				upd(1002, `{"state":{"reported":{"a":3}}}`),
				{op: "delete", at: 2000, want: `{"version":3,"timestamp":2000}`},
				{
					op: "update", at: 3000, payload: `{"state":{"desired":{"b":1}},"version":3}`,
					want:      `{"state":{"desired":{"b":1}},"metadata":{"desired":{"b":{"timestamp":3000}}},"version":4,"timestamp":3000}`,
					delta:     `{"state":{"b":1},"metadata":{"b":{"timestamp":3000}},"version":4,"timestamp":3000}`,
					documents: `{"previous":null,"current":{"state":{"desired":{"b":1}},"metadata":{"desired":{"b":{"timestamp":3000}}},"version":4},"timestamp":3000}`,
				},
			},
			final:   `{"state":{"desired":{"b":1},"delta":{"b":1}},"metadata":{"desired":{"b":{"timestamp":3000}},"delta":{"b":{"timestamp":3000}}},"version":4,"timestamp":3000}`,
			finalAt: 3000,
		},
		{
			name: "delete: the payload is ignored apart from a valid token",
			steps: []step{
				upd(1000, `{"state":{"reported":{"a":1}}}`),
				{op: "delete", at: 2000, payload: `not json at all`, want: `{"version":1,"timestamp":2000}`},
			},
			final: "null",
		},
	}
}

func TestConformance(t *testing.T) {
	cases := conformanceCases()
	if len(cases) < 45 {
		t.Fatalf("only %d conformance cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.start
			for i, st := range c.steps {
				what := fmt.Sprintf("step %d (%s)", i, st.op)
				switch st.op {
				case "update":
					lim := st.lim
					if lim == (Limits{}) {
						lim = DefaultLimits()
					}
					res, e := Update(s, []byte(st.payload), at(st.at), lim)
					if st.want == "" {
						if e != nil {
							t.Fatalf("%s: setup update rejected: %v", what, e)
						}
						s = res.Next
						continue
					}
					if e != nil {
						assertJSON(t, what+" rejected", e.Document(at(st.at)), st.want)
						continue
					}
					assertJSON(t, what+" accepted", res.Accepted, st.want)
					if st.delta == "" {
						if res.Delta != nil {
							t.Errorf("%s: unexpected delta %s", what, res.Delta)
						}
					} else if res.Delta == nil {
						t.Errorf("%s: no delta, want %s", what, compact(t, st.delta))
					} else {
						assertJSON(t, what+" delta", res.Delta, st.delta)
					}
					if st.documents != "" {
						assertJSON(t, what+" documents", res.Documents, st.documents)
					}
					s = res.Next
				case "get":
					b, e := Get(s, thing, []byte(st.payload), at(st.at))
					if e != nil {
						b = e.Document(at(st.at))
					}
					assertJSON(t, what, b, st.want)
				case "delete":
					next, b, e := Delete(s, thing, []byte(st.payload), at(st.at))
					if e != nil {
						b = e.Document(at(st.at))
					} else {
						s = next
					}
					assertJSON(t, what, b, st.want)
				default:
					t.Fatalf("unknown op %q", st.op)
				}
			}
			switch c.final {
			case "":
			case "null":
				if d := Document(s, at(c.finalAt)); d != nil {
					t.Errorf("final: want no document, got %s", d)
				}
			default:
				assertJSON(t, "final document", Document(s, at(c.finalAt)), c.final)
			}
		})
	}
}

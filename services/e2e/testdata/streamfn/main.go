// streamfn is a test function that speaks to the stream manager the way
// the v1 SDKs do: the connect byte, Connect with the function's token
// (AWS_CONTAINER_AUTHORIZATION_TOKEN) or, for the payload "badtoken", a
// made-up one, then CreateMessageStream and AppendMessage. It answers
// "connect=<status> append=<status> seq=<n>".
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/sdk/go/ggsdk"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

func main() {
	if err := ggsdk.Start(handle); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func handle(_ ggsdk.Context, payload []byte) ([]byte, error) {
	token := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
	if string(payload) == "badtoken" {
		token = "not-a-token-of-this-core"
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+os.Getenv("STREAM_MANAGER_SERVER_PORT"), 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	send := func(op protocol.Op, v any) error {
		b, err := protocol.Encode(v)
		if err != nil {
			return err
		}
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(b)+1))
		hdr[4] = byte(op)
		_, err = c.Write(append(hdr[:], b...))
		return err
	}
	c.Write([]byte{protocol.ConnectVersion})
	if err := send(protocol.OpConnect, protocol.ConnectRequest{RequestID: "c1", ProtocolVersion: "1.1.0", SDKVersion: "1.1.1", AuthToken: token}); err != nil {
		return nil, err
	}
	if _, err := r.ReadByte(); err != nil {
		return nil, err
	}
	_, b, err := protocol.ReadFrame(r, 0)
	if err != nil {
		return nil, err
	}
	var cr protocol.ConnectResponse
	if err := protocol.Decode(b, &cr); err != nil {
		return nil, err
	}
	if cr.Status != protocol.Success {
		return []byte(fmt.Sprintf("connect=%d", cr.Status)), nil
	}
	send(protocol.OpCreateMessageStream, map[string]any{"requestId": "r1", "definition": map[string]any{"name": "fromfn", "maxSize": 268435456, "streamSegmentSize": 16777216, "strategyOnFull": 0, "persistence": 0, "flushOnWrite": false}})
	if _, _, err := protocol.ReadFrame(r, 0); err != nil {
		return nil, err
	}
	send(protocol.OpAppendMessage, map[string]any{"requestId": "r2", "name": "fromfn", "payload": []byte("hello")})
	_, b, err = protocol.ReadFrame(r, 0)
	if err != nil {
		return nil, err
	}
	var ar protocol.AppendMessageResponse
	if err := protocol.Decode(b, &ar); err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("connect=%d append=%d seq=%d", cr.Status, ar.Status, ar.SequenceNumber)), nil
}

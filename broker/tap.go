package broker

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/evergreen-edge/evergreen/broker/router"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Taps (gRPC Subscribe) watch the router without ever slowing it: each
// has a bounded queue, and a message for a full queue is dropped and
// counted for that tap alone.
const (
	maxTaps   = 16
	tapBuffer = 256
)

type taps struct {
	mu     sync.RWMutex
	list   []*tap
	n      atomic.Int32
	closed bool
}

type tap struct {
	filter  string
	ch      chan *brokerv1.RoutedMessage
	dropped atomic.Uint64
	// done is closed when the broker stops.
	done chan struct{}
}

// active reports whether any tap is open: the router collects targets
// only then.
func (t *taps) active() bool { return t.n.Load() > 0 }

func (t *taps) add(filter string) (*tap, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("the broker is stopping: %w", errdefs.ErrUnavailable)
	}
	if len(t.list) >= maxTaps {
		return nil, fmt.Errorf("%d taps are already open, the limit: %w", maxTaps, errdefs.ErrResourceExhausted)
	}
	tp := &tap{filter: filter, ch: make(chan *brokerv1.RoutedMessage, tapBuffer), done: make(chan struct{})}
	t.list = append(t.list, tp)
	t.n.Store(int32(len(t.list)))
	return tp, nil
}

func (t *taps) remove(tp *tap) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, x := range t.list {
		if x == tp {
			t.list = append(t.list[:i], t.list[i+1:]...)
			break
		}
	}
	t.n.Store(int32(len(t.list)))
}

// offer shows a routed message to every tap whose filter matches its topic.
func (t *taps) offer(m *message, targets []router.Endpoint) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var rm *brokerv1.RoutedMessage
	for _, tp := range t.list {
		if !topic.Match(tp.filter, m.topic) {
			continue
		}
		if rm == nil {
			// One copy shared by the taps: gRPC only reads it.
			rm = &brokerv1.RoutedMessage{
				Topic:   m.topic,
				Payload: m.payload,
				Source:  endpointProto(m.src),
				Targets: endpointsProto(targets),
				Qos:     uint32(min(m.qos, 1)),
				Time:    timestamppb.New(m.time),
			}
		}
		select {
		case tp.ch <- rm:
		default:
			tp.dropped.Add(1)
		}
	}
}

// closeAll ends every tap and refuses new ones.
func (t *taps) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, tp := range t.list {
		close(tp.done)
	}
	t.list = nil
	t.n.Store(0)
}

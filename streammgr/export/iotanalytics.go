package export

import (
	"context"
	"fmt"
	"strconv"

	"github.com/evergreen-edge/evergreen/streammgr/store"
)

func (c IoTAnalyticsConfig) common() common {
	return common{Identifier: c.Identifier, BatchSize: c.BatchSize, BatchInterval: c.BatchInterval,
		Priority: c.Priority, StartSequenceNumber: c.StartSequenceNumber, Disabled: c.Disabled}
}

func (c IoTAnalyticsConfig) newSender(e *exporter) sender {
	return &iotAnalyticsSender{e: e, cfg: c}
}

// iotAnalyticsSender sends a batch with BatchPutMessage (POST
// /messages/batch on iotanalytics.<region>.amazonaws.com). A message's
// messageId is iotMsgIdPrefix followed by its sequence number: unique in a
// batch as the API requires, and the same when the message is sent again.
// Messages named in batchPutMessageErrorEntries are retried alone.
type iotAnalyticsSender struct {
	e     *exporter
	cfg   IoTAnalyticsConfig
	batch partial
}

func (*iotAnalyticsSender) close()         {}
func (*iotAnalyticsSender) chargesItself() {}

type iotAnalyticsMessage struct {
	MessageID string `json:"messageId"`
	Payload   []byte `json:"payload"` // blob: standard base64
}

type batchPutMessageRequest struct {
	ChannelName string                `json:"channelName"`
	Messages    []iotAnalyticsMessage `json:"messages"`
}

type batchPutMessageResponse struct {
	Errors []struct {
		MessageID    string `json:"messageId"`
		ErrorCode    string `json:"errorCode"`
		ErrorMessage string `json:"errorMessage"`
	} `json:"batchPutMessageErrorEntries"`
}

func (s *iotAnalyticsSender) send(ctx context.Context, msgs []store.Message) error {
	pending, _ := s.batch.pending(msgs)
	if len(pending) == 0 {
		return nil
	}
	req := batchPutMessageRequest{ChannelName: s.cfg.Channel, Messages: make([]iotAnalyticsMessage, len(pending))}
	for i, m := range pending {
		req.Messages[i] = iotAnalyticsMessage{MessageID: s.cfg.MsgIDPrefix + strconv.FormatInt(m.Seq, 10), Payload: m.Payload}
	}
	var resp batchPutMessageResponse
	if err := s.e.postAWSJSON(ctx, ServiceIoTAnalytics, "", "/messages/batch", "BatchPutMessage", req, &resp); err != nil {
		return fmt.Errorf("%w (channel %q)", err, s.cfg.Channel)
	}
	failed := map[string]string{}
	first := ""
	for _, f := range resp.Errors {
		failed[f.MessageID] = f.ErrorCode
		if first == "" {
			first = fmt.Sprintf("%s: %s: %s", f.MessageID, f.ErrorCode, f.ErrorMessage)
		}
	}
	n := 0
	for i, m := range pending {
		if _, bad := failed[req.Messages[i].MessageID]; bad {
			n++
			continue
		}
		s.batch.take(m.Seq)
	}
	if n > 0 {
		return fmt.Errorf("iotanalytics BatchPutMessage to channel %q: %d of %d messages failed (first %s)", s.cfg.Channel, n, len(pending), first)
	}
	return nil
}

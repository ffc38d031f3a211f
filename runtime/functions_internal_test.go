package runtime

import (
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

func TestLambdaLogBytes(t *testing.T) {
	space := 128
	g := &groupdef.Group{Loggers: &groupdef.LoggerDefinitionVersion{Loggers: []groupdef.Logger{
		{Component: "GreengrassSystem", Type: "FileSystem", Space: &space},
	}}}
	if got := lambdaLogBytes(g); got != DefaultFunctionLogBytes {
		t.Fatalf("no Lambda logger: %d", got)
	}
	g.Loggers.Loggers = append(g.Loggers.Loggers, groupdef.Logger{Component: "Lambda", Type: "FileSystem", Space: &space})
	if got := lambdaLogBytes(g); got != 128<<10 {
		t.Fatalf("Lambda logger of 128 KB: %d", got)
	}
	if got := lambdaLogBytes(&groupdef.Group{}); got != DefaultFunctionLogBytes {
		t.Fatalf("no loggers: %d", got)
	}
}

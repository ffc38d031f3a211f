package nodejs

import "embed"

// Files are the shim sources, rooted like the install directory: the
// runtime starts `node <dir>/lambda_nodejs_runtime.js --handler=m.f` in the
// function's code directory with NODE_PATH=<dir>/node_modules.
//
// Globs rather than directory names: they say exactly what ships (no test
// code, nothing a local run or an editor leaves behind), and a directory
// pattern would silently drop any "_"- or "."-prefixed file.
//
//go:embed lambda_nodejs_runtime.js
//go:embed node_modules/*/*.js node_modules/*/package.json
var Files embed.FS

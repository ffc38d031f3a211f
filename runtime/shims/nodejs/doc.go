// Package nodejs holds the Node.js side of the v1 Lambda runtime: the
// lambda_nodejs_runtime.js worker entry point and the core-shipped modules
// user code requires (aws-greengrass-common-js, aws-greengrass-ipc-sdk-js)
// plus an aws-greengrass-core-sdk for functions that do not bundle one. They
// speak the v1 IPC of spec §1.3 to the runtime's IPC server; Files carries
// them so the daemon can install them next to the functions it starts.
package nodejs

"""HTTP client of the core's Lambda IPC (spec 1.3), used by the Lambda
runtime, the Greengrass Core SDK and connectors."""

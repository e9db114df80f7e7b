// The client's pure data formats (message content, link strings, provisioning payloads, history
// archives, conversation and delivery-status types) live in ParleyFormats, a module without I/O
// dependencies, so that the fuzz build compiles the parsers without GRDB or swift-nio. Clients
// of ParleyClient see them as before.
@_exported import ParleyFormats

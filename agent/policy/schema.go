package policy

import _ "embed"

// JSONSchema describes one profile file for editors (yaml-language-server:
// `# yaml-language-server: $schema=...`). TestJSONSchemaMatchesKeys keeps it
// in step with Keys.
//
//go:embed schema.json
var JSONSchema []byte

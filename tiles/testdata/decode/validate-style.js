// Validates a MapLibre style JSON file with @maplibre/maplibre-gl-style-spec
// and prints the list of errors as JSON ([] when valid).
import { readFileSync } from 'node:fs';
import { validateStyleMin } from '@maplibre/maplibre-gl-style-spec';

const style = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const errors = validateStyleMin(style).map((e) => e.message);
process.stdout.write(JSON.stringify(errors) + '\n');

// Decodes an MVT file (raw or gzipped) with @mapbox/vector-tile, the
// decoder MapLibre uses, and prints it as JSON for the Go tests:
// {"layers":[{"name","version","extent","features":[{"id","type","properties","geometry"}]}]}
// geometry is loadGeometry(): rings/lines/points as [[[x,y],...],...] in tile units.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import Pbf from 'pbf';
import { VectorTile } from '@mapbox/vector-tile';

let data = readFileSync(process.argv[2]);
if (data.length > 1 && data[0] === 0x1f && data[1] === 0x8b) data = gunzipSync(data);
// Copy into a fresh buffer: pbf reads doubles through a DataView over
// the whole ArrayBuffer, and Node pools small file buffers at an offset.
const tile = new VectorTile(new Pbf(new Uint8Array(data)));
const types = ['Unknown', 'Point', 'LineString', 'Polygon'];
const out = { layers: [] };
for (const name of Object.keys(tile.layers)) {
  const layer = tile.layers[name];
  const features = [];
  for (let i = 0; i < layer.length; i++) {
    const f = layer.feature(i);
    features.push({
      id: f.id,
      type: types[f.type],
      properties: f.properties,
      geometry: f.loadGeometry().map((part) => part.map((p) => [p.x, p.y])),
    });
  }
  out.layers.push({ name, version: layer.version, extent: layer.extent, features });
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n');

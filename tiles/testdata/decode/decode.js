// Decodes MVT files (raw or gzipped) with @mapbox/vector-tile, the
// decoder MapLibre uses, and prints them as JSON for the Go tests:
// {"layers":[{"name","version","extent","features":[{"id","type","properties","geometry"}]}]}
// geometry is loadGeometry(): rings/lines/points as [[[x,y],...],...] in tile units.
// One file: the tile, indented. Several files: one line of JSON per file, in order.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import Pbf from 'pbf';
import { VectorTile } from '@mapbox/vector-tile';

const types = ['Unknown', 'Point', 'LineString', 'Polygon'];

function decode(file) {
  let data = readFileSync(file);
  if (data.length > 1 && data[0] === 0x1f && data[1] === 0x8b) data = gunzipSync(data);
  // Copy into a fresh buffer: pbf reads doubles through a DataView over
  // the whole ArrayBuffer, and Node pools small file buffers at an offset.
  const tile = new VectorTile(new Pbf(new Uint8Array(data)));
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
  return out;
}

const files = process.argv.slice(2);
if (files.length === 1) {
  process.stdout.write(JSON.stringify(decode(files[0]), null, 1) + '\n');
} else {
  for (const f of files) process.stdout.write(JSON.stringify(decode(f)) + '\n');
}

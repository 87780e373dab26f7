/** @ditfa/image — an RGB canvas with a bitmap font, sample grids, PNG encoding/decoding and animated PNG. */
export * from './canvas.js';
export * from './font.js';
export * from './grid.js';
export * from './png.js';
export * from './apng.js';

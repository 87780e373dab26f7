/** @ditfa/image — an RGB canvas with a bitmap font, sample grids, and PNG encoding/decoding. */
export * from './canvas.js';
export * from './font.js';
export * from './grid.js';
export * from './png.js';

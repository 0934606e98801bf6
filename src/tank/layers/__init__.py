"""Reading layer blobs: decompression (gzip, zstd, plain tar) and tank's own tar reader."""

"""Pictures in and out (Pillow and numpy, no Beam): decoding images, rendering masks and overlays, colour
maps, PNG files."""

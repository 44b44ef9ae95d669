"""A small procedural renderer for fixed-camera compound scenes: a pinhole camera over a ground plane,
textured asphalt, painted fire lanes and parking bays, a building wall, static clutter and cars drawn
as shaded 3D solids. Used for the sample footage and for synthetic training frames (exact labels)."""

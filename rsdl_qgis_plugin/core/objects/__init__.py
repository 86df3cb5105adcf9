"""Objects (boxes, oriented boxes, instance masks): their representation, overlaps, merging across
tile seams, and matching against reference objects."""

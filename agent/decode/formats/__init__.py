"""Wire formats: one module per format (json, form, xml, ...), each an `Extractor` registered in
`extract.default_extractors`. A format turns a frame's bytes into items and reads a value at a
path inside an item; `formats/tree.py` is the path language the document formats share.
"""

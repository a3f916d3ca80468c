"""The footfall agent: reads a store's sensors and POS, buffers every reading durably, uploads it signed."""

"""Transports: how bytes arrive from devices. No device knowledge here; adapters decode (decode/).

`base.py` is every transport's contract: the `Frame` it delivers, the `Intake` it delivers it to
(and the outcomes it hears back), the `Source` it runs as, and per-source health. A transport
imports that, its own helpers and its options class (config/transports.py), never the decoder
or the buffer. `device.py` is what the pulling transports share (one task per device under
`keep_running`, arrival times), `backoff.py` their reconnect delays. One module per transport:
`http_push.py`, `serial.py` (+ `port_names.py`), `modbus.py` (+ `modbus_client.py`, the only
pymodbus import), `mqtt.py` (+ `mqtt_client.py`, the only paho import), `http_poll.py`,
`csv_dir.py`.
"""

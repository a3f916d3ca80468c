"""`footfall agent probe serial|modbus|http|mqtt`: the probe's command line (the work is in agent/probe.py).

Exit codes: 0 something arrived (and the adapter, if given, took it); 1 the device could not be
reached (the message says why); 2 bad arguments; 3 reached, but nothing usable arrived.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

import typer

app = typer.Typer(
    help="Connect to one device, show what it sends and what an adapter makes of it (nothing is stored).",
    no_args_is_help=True,
    add_completion=False,
)

AdapterOption = Annotated[
    str, typer.Option("--adapter", "-a", help="Decode with this profile (see firmware-adapters/), e.g. terabee-evo.")
]
ZoneOption = Annotated[str, typer.Option("--timezone", help="IANA zone for devices that send local time.")]
Parity = Literal["none", "even", "odd", "mark", "space"]


def _run(probe: Callable[..., Coroutine[Any, Any, Any]], adapter: str, timezone: str, **kwargs: Any) -> Any:
    from footfall.agent.probe import ProbeFailed, load_adapter

    try:
        loaded = load_adapter(adapter or None, timezone)
        return asyncio.run(probe(typer.echo, adapter=loaded, **kwargs))
    except ProbeFailed as exc:
        typer.echo(f"footfall agent probe: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def serial(
    port: Annotated[str, typer.Option("--port", help="The port, e.g. /dev/serial/by-id/usb-... or /dev/ttyUSB0.")],
    baud: Annotated[int, typer.Option(help="Bits per second.")] = 9600,
    parity: Annotated[str, typer.Option(help="none, even, odd, mark or space.")] = "none",
    stop_bits: Annotated[int, typer.Option("--stop-bits", help="1 or 2.")] = 1,
    byte_size: Annotated[int, typer.Option("--byte-size", help="Data bits, 5-8.")] = 8,
    request: Annotated[str, typer.Option(help="Send this first, e.g. 'R\\r' (backslash escapes allowed).")] = "",
    duration: Annotated[float, typer.Option(help="Seconds to listen.")] = 10.0,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Stop after this many frames.")] = 20,
    adapter: AdapterOption = "",
    timezone: ZoneOption = "",
) -> None:
    """Listen on a serial port: raw bytes, or frames and readings with --adapter; names wrong baud, busy ports."""
    from footfall.agent.probe import probe_serial

    if parity not in ("none", "even", "odd", "mark", "space"):
        typer.echo("footfall agent probe serial: --parity must be none, even, odd, mark or space", err=True)
        raise typer.Exit(2)
    taken = _run(
        probe_serial,
        adapter,
        timezone,
        port=port,
        baud=baud,
        parity=parity,
        stop_bits=stop_bits,
        byte_size=byte_size,
        request=codecs.decode(request, "unicode_escape").encode("latin-1"),
        duration=duration,
        max_frames=max_frames,
    )
    if not taken:
        raise typer.Exit(3)


@app.command()
def modbus(
    host: Annotated[str, typer.Option(help="Modbus TCP: the device's or gateway's address.")] = "",
    port: Annotated[int, typer.Option(help="Modbus TCP port.")] = 502,
    serial_port: Annotated[str, typer.Option("--serial-port", help="Modbus RTU: the bus's serial port.")] = "",
    baud: Annotated[int, typer.Option(help="RTU: bits per second.")] = 9600,
    parity: Annotated[str, typer.Option(help="RTU: none, even, odd, mark or space.")] = "none",
    stop_bits: Annotated[int, typer.Option("--stop-bits", help="RTU: 1 or 2.")] = 1,
    unit: Annotated[int, typer.Option(help="The unit (slave) id.")] = 1,
    function: Annotated[str, typer.Option(help="holding or input registers.")] = "holding",
    address: Annotated[int, typer.Option(help="First register (as on the wire, from 0).")] = 0,
    count: Annotated[int, typer.Option(help="How many registers.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 1.0,
    adapter: AdapterOption = "",
    timezone: ZoneOption = "",
) -> None:
    """Read registers of one unit (or the adapter's register map); explains exception codes and timeouts."""
    from footfall.agent.probe import probe_modbus

    if bool(host) == bool(serial_port) or function not in ("holding", "input") or not 1 <= count <= 125:
        typer.echo(
            "footfall agent probe modbus: give --host (TCP) or --serial-port (RTU), --function holding|input, "
            "--count 1-125",
            err=True,
        )
        raise typer.Exit(2)
    _run(
        probe_modbus,
        adapter,
        timezone,
        mode="tcp" if host else "rtu",
        host=host,
        port=port,
        serial_port=serial_port,
        baud=baud,
        parity=parity,
        stop_bits=stop_bits,
        unit=unit,
        function=function,
        address=address,
        count=count,
        within=timeout,
    )


@app.command()
def http(
    url: Annotated[str, typer.Argument(help="What to GET, e.g. http://10.0.0.5/api/counts.")],
    header: Annotated[list[str] | None, typer.Option(help="Extra header 'Name: value' (repeatable).")] = None,
    token: Annotated[str, typer.Option(help="Sent as Authorization: Bearer <token>.")] = "",
    username: Annotated[str, typer.Option(help="HTTP basic auth user.")] = "",
    password: Annotated[str, typer.Option(help="HTTP basic auth password.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 10.0,
    adapter: AdapterOption = "",
    timezone: ZoneOption = "",
) -> None:
    """GET a device's URL once: status, validators (ETag), body, and the readings with --adapter."""
    from footfall.agent.probe import probe_http

    headers = {}
    for item in header or []:
        name, sep, value = item.partition(":")
        if not sep:
            typer.echo(f"footfall agent probe http: --header {item!r} must be 'Name: value'", err=True)
            raise typer.Exit(2)
        headers[name.strip()] = value.strip()
    status = _run(
        probe_http,
        adapter,
        timezone,
        url=url,
        headers=headers,
        token=token,
        username=username,
        password=password,
        within=timeout,
    )
    if not 200 <= status < 300:
        raise typer.Exit(3)


@app.command()
def mqtt(
    host: Annotated[str, typer.Option(help="The broker's address.")],
    topic: Annotated[list[str], typer.Option(help="Topic filter (repeatable), e.g. 'milesight/#'.")],
    port: Annotated[int, typer.Option(help="The broker's port.")] = 1883,
    username: Annotated[str, typer.Option(help="Broker user.")] = "",
    password: Annotated[str, typer.Option(help="Broker password.")] = "",
    tls: Annotated[bool, typer.Option(help="Connect with TLS.")] = False,
    ca_file: Annotated[str, typer.Option("--ca-file", help="TLS: the CA that signed the broker.")] = "",
    duration: Annotated[float, typer.Option(help="Seconds to listen.")] = 30.0,
    max_messages: Annotated[int, typer.Option("--max-messages", help="Stop after this many.")] = 10,
    adapter: AdapterOption = "",
    timezone: ZoneOption = "",
) -> None:
    """Subscribe for a while (a throw-away session, never the agent's) and show messages and readings."""
    from footfall.agent.probe import probe_mqtt

    seen = _run(
        probe_mqtt,
        adapter,
        timezone,
        host=host,
        port=port,
        topics=tuple(topic),
        username=username,
        password=password,
        tls=tls,
        ca_file=ca_file,
        duration=duration,
        max_messages=max_messages,
    )
    if not seen:
        raise typer.Exit(3)

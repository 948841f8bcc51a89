#!/usr/bin/env python3
"""A Serendip driver plugin (docs/plugins.md) for a dosing balance with a binary serial protocol.

The device speaks frames:  STX | command | length | payload | checksum | ETX
  STX = 0x02, ETX = 0x03, checksum = (command + length + sum(payload)) & 0xFF.
  W  -> mass in g (float32, big-endian)        G -> target in g (float32)
  S f32 -> sets the target, answered by an empty S   D b -> dosing valve on (1) / off (0)
  d  -> dosing valve state (1 byte)             I -> identity, ASCII "vendor;model;serial;firmware"
  A refused command is answered with command 0x15 (NAK) and one byte: the reason code.

  python3 balance.py --simulate     starts a simulated balance on a pseudo-terminal of its own
  python3 balance.py                talks to the port given in connect's params (options: { port: ... })
  --log FILE                        appends every request line received, for tests and troubleshooting

Standard library only. Everything for the host goes to stdout, one JSON object per line;
diagnostics go to stderr (the host logs them).
"""
import json, os, select, struct, sys, termios, threading, time, tty

STX, ETX, NAK = 0x02, 0x03, 0x15
REASONS = {1: "checksum error", 2: "target out of range", 3: "unknown command"}

DESCRIPTION = {
    "driver": "dosing-balance",
    "vendor": "Serendip example instruments",
    "timeout": 1,
    "channels": {
        "mass": {"unit": "g", "type": "float", "access": "r"},
        "target": {"unit": "g", "type": "float", "access": "rw", "limits": [0, 200]},
        "dosing": {"type": "bool", "access": "rw"},
    },
    "safe_state": {"dosing": False},
}


def frame(command, payload=b""):
    body = bytes([ord(command) if isinstance(command, str) else command, len(payload)]) + payload
    return bytes([STX]) + body + bytes([sum(body) & 0xFF, ETX])


class SimulatedBalance(threading.Thread):
    """The device end of a pty: doses at 5 g/s towards its target while the valve is open."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd, self.mass, self.target, self.dosing, self.last = fd, 0.0, 0.0, False, time.monotonic()

    def advance(self):
        now = time.monotonic()
        if self.dosing and self.mass < self.target:
            self.mass = min(self.target, self.mass + 5.0 * (now - self.last))
        self.last = now

    def run(self):
        buffer = b""
        while True:
            buffer += os.read(self.fd, 256)
            while len(buffer) >= 5:
                start = buffer.find(bytes([STX]))
                if start < 0:
                    buffer = b""
                    break
                buffer = buffer[start:]
                length = buffer[2]
                if len(buffer) < 5 + length:
                    break
                command, payload, check = buffer[1], buffer[3:3 + length], buffer[3 + length]
                buffer = buffer[5 + length:]
                os.write(self.fd, self.answer(command, payload, check))

    def answer(self, command, payload, check):
        if (command + len(payload) + sum(payload)) & 0xFF != check:
            return frame(NAK, b"\x01")
        self.advance()
        c = chr(command)
        if c == "W":
            return frame("W", struct.pack(">f", self.mass))
        if c == "G":
            return frame("G", struct.pack(">f", self.target))
        if c == "S":
            value = struct.unpack(">f", payload)[0]
            if not 0 <= value <= 250:
                return frame(NAK, b"\x02")
            self.target = value
            return frame("S")
        if c == "D":
            self.dosing = payload == b"\x01"
            return frame("D")
        if c == "d":
            return frame("d", b"\x01" if self.dosing else b"\x00")
        if c == "I":
            return frame("I", b"Serendip example instruments;DB-200;SIM-0001;2.1")
        return frame(NAK, b"\x03")


class PluginError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Link:
    """One frame out, one frame back, within a timeout."""

    def __init__(self, fd):
        self.fd = fd
        tty.setraw(fd)
        termios.tcflush(fd, termios.TCIOFLUSH)

    def ask(self, command, payload=b""):
        termios.tcflush(self.fd, termios.TCIFLUSH)  # a late reply must not answer this request
        os.write(self.fd, frame(command, payload))
        deadline, buffer = time.monotonic() + 0.5, b""
        while True:
            start = buffer.find(bytes([STX]))
            if start >= 0 and len(buffer) >= start + 3 and len(buffer) >= start + 5 + buffer[start + 2]:
                reply = buffer[start:start + 5 + buffer[start + 2]]
                command_got, payload_got = reply[1], reply[3:-2]
                if (command_got + len(payload_got) + sum(payload_got)) & 0xFF != reply[-2] or reply[-1] != ETX:
                    raise PluginError("lost", "garbled frame from the balance")
                if command_got == NAK:
                    code = payload_got[0] if payload_got else 0
                    raise PluginError("refused", "balance refused: " + REASONS.get(code, f"reason {code}"))
                return payload_got
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise PluginError("timeout", "no reply from the balance within 0.5 s")
            buffer += os.read(self.fd, 256)


class Plugin:
    def __init__(self, simulate):
        self.simulate, self.link = simulate, None

    def handle(self, method, params):
        if method == "describe":
            return DESCRIPTION
        if method == "connect":
            if self.simulate:
                device, port = os.openpty()
                SimulatedBalance(device).start()
                self.link = Link(port)
            else:
                path = params.get("port")
                if not path:
                    raise PluginError("invalid", "connect needs options: { port: /dev/ttyUSB0 } (or run with --simulate)")
                try:
                    self.link = Link(os.open(path, os.O_RDWR | os.O_NOCTTY))
                except OSError as error:
                    raise PluginError("lost", f"cannot open {path}: {error.strerror}")
            return {}
        if self.link is None:
            raise PluginError("lost", "not connected")
        if method == "identity":
            vendor, model, serial, firmware = self.link.ask("I").decode().split(";")
            return {"vendor": vendor, "model": model, "serial": serial, "firmware": firmware}
        if method == "read":
            channel = params.get("channel")
            if channel == "mass":
                return {"value": round(struct.unpack(">f", self.link.ask("W"))[0], 4)}
            if channel == "target":
                return {"value": round(struct.unpack(">f", self.link.ask("G"))[0], 4)}
            if channel == "dosing":
                return {"value": self.link.ask("d") == b"\x01"}
        if method == "write":
            channel, value = params.get("channel"), params.get("value")
            if channel == "target":
                self.link.ask("S", struct.pack(">f", value))
                return {}
            if channel == "dosing":
                self.link.ask("D", b"\x01" if value else b"\x00")
                return {}
        if method == "safe_state":
            self.link.ask("D", b"\x00")
            return {}
        raise PluginError("invalid", f"no such request: {method} {json.dumps(params)}")


def main():
    args = sys.argv[1:]
    log = open(args[args.index("--log") + 1], "a") if "--log" in args else None
    plugin = Plugin(simulate="--simulate" in args)
    for line in iter(sys.stdin.readline, ""):
        if log:
            log.write(line)
            log.flush()
        request = json.loads(line)
        reply = {"id": request["id"]}
        try:
            reply["result"] = plugin.handle(request["method"], request.get("params", {}))
        except PluginError as error:
            reply["error"] = {"code": error.code, "message": str(error)}
        except OSError as error:
            reply["error"] = {"code": "lost", "message": f"serial line: {error.strerror}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()

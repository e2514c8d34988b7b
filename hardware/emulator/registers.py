"""Control tables of the emulated servo models: address, size, access (read-only / EEPROM / RAM),
power-on default and value range of every register (from the vendors' control tables).

Feetech values are little-endian (``PacketHandler(0)``); signed Feetech registers use
sign-magnitude (``sign_bit``), signed Dynamixel registers two's complement (``signed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Access = Literal["ro", "eeprom", "ram"]


@dataclass(frozen=True)
class Reg:
    addr: int
    size: int
    access: Access
    default: int = 0
    lo: int | None = None  # value range (decoded); None = whatever fits the bytes
    hi: int | None = None
    sign_bit: int | None = None  # Feetech sign-magnitude bit
    signed: bool = False  # Dynamixel two's complement


@dataclass(frozen=True)
class ServoModel:
    """One servo model: its protocol, model number and control table (register name -> Reg)."""

    name: str
    protocol: Literal["feetech", "dynamixel"]
    model_number: int
    table_size: int
    regs: dict[str, Reg]
    position_modes: tuple[int, ...] = (0,)
    operating_modes: tuple[int, ...] = (0,)
    eeprom_end: int = 0  # addresses below this are EEPROM (for the access checks)
    _by_addr: dict[int, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name, r in self.regs.items():
            self._by_addr[r.addr] = name

    def at(self, addr: int) -> str | None:
        """The register that starts at ``addr``."""
        return self._by_addr.get(addr)

    def covering(self, addr: int) -> tuple[str, Reg] | None:
        """The register whose bytes include ``addr``."""
        for name, r in self.regs.items():
            if r.addr <= addr < r.addr + r.size:
                return name, r
        return None


def _sts_table() -> dict[str, Reg]:
    E, R, RO = "eeprom", "ram", "ro"
    return {
        "Firmware_Major": Reg(0, 1, RO, 3), "Firmware_Minor": Reg(1, 1, RO, 9), "Model_Number": Reg(3, 2, RO, 777),
        "ID": Reg(5, 1, E, 1, 0, 253), "Baud_Rate": Reg(6, 1, E, 0, 0, 7),
        "Return_Delay_Time": Reg(7, 1, E, 250, 0, 254), "Response_Status_Level": Reg(8, 1, E, 1, 0, 1),
        "Min_Position_Limit": Reg(9, 2, E, 0, 0, 4095), "Max_Position_Limit": Reg(11, 2, E, 4095, 0, 4095),
        "Max_Temperature_Limit": Reg(13, 1, E, 70, 0, 100), "Max_Voltage_Limit": Reg(14, 1, E, 140),
        "Min_Voltage_Limit": Reg(15, 1, E, 40), "Max_Torque_Limit": Reg(16, 2, E, 1000, 0, 1000),
        "Phase": Reg(18, 1, E, 12), "Unloading_Condition": Reg(19, 1, E, 44), "LED_Alarm_Condition": Reg(20, 1, E, 47),
        "P_Coefficient": Reg(21, 1, E, 32), "D_Coefficient": Reg(22, 1, E, 32), "I_Coefficient": Reg(23, 1, E, 0),
        "Minimum_Startup_Force": Reg(24, 2, E, 16), "CW_Dead_Zone": Reg(26, 1, E, 1), "CCW_Dead_Zone": Reg(27, 1, E, 1),
        "Protection_Current": Reg(28, 2, E, 500, 0, 511), "Angular_Resolution": Reg(30, 1, E, 1),
        "Homing_Offset": Reg(31, 2, E, 0, -2047, 2047, sign_bit=11), "Operating_Mode": Reg(33, 1, E, 0, 0, 3),
        "Protective_Torque": Reg(34, 1, E, 20), "Protection_Time": Reg(35, 1, E, 200),
        "Overload_Torque": Reg(36, 1, E, 80, 0, 100),
        "Torque_Enable": Reg(40, 1, R, 0, 0, 128), "Acceleration": Reg(41, 1, R, 0, 0, 254),
        "Goal_Position": Reg(42, 2, R, 0, sign_bit=15), "Goal_Time": Reg(44, 2, R, 0),
        "Goal_Velocity": Reg(46, 2, R, 0, sign_bit=15), "Torque_Limit": Reg(48, 2, R, 1000, 0, 1000),
        "Lock": Reg(55, 1, R, 1, 0, 1),
        "Present_Position": Reg(56, 2, RO, sign_bit=15), "Present_Velocity": Reg(58, 2, RO, sign_bit=15),
        "Present_Load": Reg(60, 2, RO, sign_bit=10), "Present_Voltage": Reg(62, 1, RO, 74),
        "Present_Temperature": Reg(63, 1, RO, 30), "Status": Reg(65, 1, RO), "Moving": Reg(66, 1, RO),
        "Present_Current": Reg(69, 2, RO), "Maximum_Acceleration": Reg(85, 1, E, 254, 0, 254),
    }


def _x_table(model_number: int, velocity_limit: int, p_gain: int, has_current: bool) -> dict[str, Reg]:
    E, R, RO = "eeprom", "ram", "ro"
    regs = {
        "Model_Number": Reg(0, 2, RO, model_number), "Model_Information": Reg(2, 4, RO),
        "Firmware_Version": Reg(6, 1, RO, 45), "ID": Reg(7, 1, E, 1, 0, 252), "Baud_Rate": Reg(8, 1, E, 1, 0, 7),
        "Return_Delay_Time": Reg(9, 1, E, 250, 0, 254), "Drive_Mode": Reg(10, 1, E, 0, 0, 13),
        "Operating_Mode": Reg(11, 1, E, 3, 0, 16), "Secondary_ID": Reg(12, 1, E, 255),
        "Protocol_Type": Reg(13, 1, E, 2, 1, 2),
        "Homing_Offset": Reg(20, 4, E, 0, -1_044_479, 1_044_479, signed=True),
        "Moving_Threshold": Reg(24, 4, E, 10, 0, 1023), "Temperature_Limit": Reg(31, 1, E, 72, 0, 100),
        "Max_Voltage_Limit": Reg(32, 2, E, 140), "Min_Voltage_Limit": Reg(34, 2, E, 60),
        "PWM_Limit": Reg(36, 2, E, 885, 0, 885),
        "Velocity_Limit": Reg(44, 4, E, velocity_limit, 0, 1023),
        "Max_Position_Limit": Reg(48, 4, E, 4095, 0, 4095), "Min_Position_Limit": Reg(52, 4, E, 0, 0, 4095),
        "Startup_Configuration": Reg(60, 1, E, 0), "Shutdown": Reg(63, 1, E, 52),
        "Torque_Enable": Reg(64, 1, R, 0, 0, 1), "LED": Reg(65, 1, R, 0, 0, 1),
        "Status_Return_Level": Reg(68, 1, R, 2, 0, 2), "Registered_Instruction": Reg(69, 1, RO),
        "Hardware_Error_Status": Reg(70, 1, RO), "Velocity_I_Gain": Reg(76, 2, R, 1000, 0, 16383),
        "Velocity_P_Gain": Reg(78, 2, R, 100, 0, 16383), "Position_D_Gain": Reg(80, 2, R, 0, 0, 16383),
        "Position_I_Gain": Reg(82, 2, R, 0, 0, 16383), "Position_P_Gain": Reg(84, 2, R, p_gain, 0, 16383),
        "Feedforward_2nd_Gain": Reg(88, 2, R, 0, 0, 16383), "Feedforward_1st_Gain": Reg(90, 2, R, 0, 0, 16383),
        "Bus_Watchdog": Reg(98, 1, R, 0, -1, 127, signed=True), "Goal_PWM": Reg(100, 2, R, 0, -885, 885, signed=True),
        "Goal_Velocity": Reg(104, 4, R, 0, -1023, 1023, signed=True),
        "Profile_Acceleration": Reg(108, 4, R, 0, 0, 32767), "Profile_Velocity": Reg(112, 4, R, 0, 0, 32767),
        "Goal_Position": Reg(116, 4, R, 0, signed=True), "Realtime_Tick": Reg(120, 2, RO),
        "Moving": Reg(122, 1, RO), "Moving_Status": Reg(123, 1, RO), "Present_PWM": Reg(124, 2, RO, signed=True),
        "Present_Load": Reg(126, 2, RO, signed=True), "Present_Velocity": Reg(128, 4, RO, signed=True),
        "Present_Position": Reg(132, 4, RO, signed=True), "Velocity_Trajectory": Reg(136, 4, RO, signed=True),
        "Position_Trajectory": Reg(140, 4, RO, signed=True), "Present_Input_Voltage": Reg(144, 2, RO, 120),
        "Present_Temperature": Reg(146, 1, RO, 30),
    }
    if has_current:
        regs["Current_Limit"] = Reg(38, 2, E, 1193, 0, 2047)
        regs["Goal_Current"] = Reg(102, 2, R, 0, -2047, 2047, signed=True)
    return regs


STS3215 = ServoModel("sts3215", "feetech", 777, 128, _sts_table(), position_modes=(0,), operating_modes=(0, 1, 2, 3),
                     eeprom_end=40)
XL430_W250 = ServoModel("xl430-w250", "dynamixel", 1060, 256, _x_table(1060, 265, 640, False),
                        position_modes=(3, 4), operating_modes=(1, 3, 4, 16), eeprom_end=64)
XM430_W350 = ServoModel("xm430-w350", "dynamixel", 1020, 256, _x_table(1020, 167, 800, True),
                        position_modes=(3, 4, 5), operating_modes=(0, 1, 3, 4, 5, 16), eeprom_end=64)
XL330_M288 = ServoModel("xl330-m288", "dynamixel", 1200, 256, _x_table(1200, 445, 400, True),
                        position_modes=(3, 4, 5), operating_modes=(0, 1, 3, 4, 5, 16), eeprom_end=64)
MODELS = {m.name: m for m in (STS3215, XL430_W250, XM430_W350, XL330_M288)}
DEFAULT_MODEL = {"feetech": "sts3215", "dynamixel": "xl430-w250"}


def encode(reg: Reg, value: int) -> bytes:
    if reg.sign_bit is not None:
        value = (abs(value) & ((1 << reg.sign_bit) - 1)) | ((1 << reg.sign_bit) if value < 0 else 0)
    return int(value & ((1 << (8 * reg.size)) - 1)).to_bytes(reg.size, "little")


def decode(reg: Reg, data: bytes) -> int:
    raw = int.from_bytes(data, "little")
    if reg.sign_bit is not None:
        mag = raw & ((1 << reg.sign_bit) - 1)
        return -mag if raw & (1 << reg.sign_bit) else mag
    if reg.signed and raw & (1 << (8 * reg.size - 1)):
        return raw - (1 << (8 * reg.size))
    return raw


def fresh_table(model: ServoModel, servo_id: int) -> bytearray:
    """The control table at power-on."""
    t = bytearray(model.table_size)
    for name, r in model.regs.items():
        t[r.addr : r.addr + r.size] = encode(r, servo_id if name == "ID" else r.default)
    return t

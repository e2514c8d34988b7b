"""A real serial-servo arm (Feetech STS / Dynamixel X on a USB adapter): simgate's driver node
brings it into ROS 2 (/joint_states, /<controller>/joint_trajectory and the FollowJointTrajectory
action /<controller>/follow_joint_trajectory, /robot_description, e-stop services, diagnostics) and the gateway serves it to agents over REST / WebSocket / MCP.

    ros2 launch simgate serial_arm.launch.py serial_port:=/dev/ttyUSB0 protocol:=feetech \\
        calibration_file:=calibration.yaml robot:=so101 token_file:=gateway-tokens.json
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("simgate")
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("serial_port", default_value="/dev/ttyUSB0", description="servo bus adapter device"),
        DeclareLaunchArgument("protocol", default_value="feetech", description="feetech | dynamixel"),
        DeclareLaunchArgument("calibration_file", default_value="calibration.yaml",
                              description="written by `simgate calibrate`"),
        DeclareLaunchArgument("robot", default_value="so101", description="robot spec (built-in name or YAML path)"),
        DeclareLaunchArgument("controller", default_value="joint_trajectory_controller",
                              description="trajectory topic namespace shared by driver and gateway"),
        DeclareLaunchArgument("host", default_value="127.0.0.1", description="gateway bind address"),
        DeclareLaunchArgument("port", default_value="8000", description="gateway HTTP port"),
        DeclareLaunchArgument("token_file", default_value="gateway-tokens.json", description="gateway API tokens"),
        DeclareLaunchArgument("goal_tolerance_rad", default_value="0.05",
                              description="action: default largest error from the last point for success (rad)"),
        DeclareLaunchArgument("goal_time_s", default_value="1.0",
                              description="action: default time after a trajectory's end to reach the goal tolerance (s)"),
        DeclareLaunchArgument("feedback_rate_hz", default_value="20.0",
                              description="action: FollowJointTrajectory feedback rate (Hz)"),
        Node(package="simgate", executable="simgate-ros2-driver", name="simgate_driver", output="screen",
             parameters=[PathJoinSubstitution([share, "params", "serial_driver.yaml"]),
                         {"port": arg("serial_port"), "protocol": arg("protocol"),
                          "calibration_file": arg("calibration_file"), "robot": arg("robot"),
                          "controller": arg("controller"), "goal_tolerance_rad": arg("goal_tolerance_rad"), "goal_time_s": arg("goal_time_s"),
                          "feedback_rate_hz": arg("feedback_rate_hz")}]),
        Node(package="simgate", executable="simgate-ros2-gateway", name="simgate_gateway", output="screen",
             parameters=[PathJoinSubstitution([share, "params", "gateway.yaml"]),
                         {"robot": arg("robot"), "controller": arg("controller"), "host": arg("host"),
                          "port": arg("port"), "tokens_file": arg("token_file")}]),
    ])

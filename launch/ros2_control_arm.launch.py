"""An arm already run by ros2_control (joint_state_broadcaster + joint_trajectory_controller):
only the gateway, talking to the controller's topics.

    ros2 launch simgate ros2_control_arm.launch.py controller:=arm_controller robot:=panda
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
        DeclareLaunchArgument("controller", default_value="joint_trajectory_controller",
                              description="the joint_trajectory_controller's name"),
        DeclareLaunchArgument("joint_states_topic", default_value="/joint_states",
                              description="joint_state_broadcaster's topic"),
        DeclareLaunchArgument("robot", default_value="so101", description="robot spec matching the arm"),
        DeclareLaunchArgument("host", default_value="127.0.0.1", description="gateway bind address"),
        DeclareLaunchArgument("port", default_value="8000", description="gateway HTTP port"),
        DeclareLaunchArgument("token_file", default_value="gateway-tokens.json", description="gateway API tokens"),
        Node(package="simgate", executable="simgate-ros2-gateway", name="simgate_gateway", output="screen",
             parameters=[PathJoinSubstitution([share, "params", "gateway.yaml"]),
                         {"controller": arg("controller"), "joint_states_topic": arg("joint_states_topic"),
                          "robot": arg("robot"), "host": arg("host"), "port": arg("port"),
                          "tokens_file": arg("token_file")}]),
    ])

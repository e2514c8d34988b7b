"""One router per resource: robot (description, state, camera), motion (joints, gripper,
trajectory, pose, stop, e-stop), runs, policies."""

"""nipype orchestration: workflow factories, thin interfaces, and the runner."""

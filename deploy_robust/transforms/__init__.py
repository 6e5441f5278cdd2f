"""Model transforms applied before export: GDWS convolution rewriting (`transforms.gdws`)."""

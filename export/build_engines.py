#!/usr/bin/env python3
"""Build ONNX graphs and TensorRT plans for a set of models (same code as `editrt export`).

Examples:
    python export/build_engines.py --models clip/ViT-B-32 vqgan/vqgan_imagenet_f16_1024 --out engines/
    python export/build_engines.py --models clip/ViT-B-32 stylegan2/ffhq-1024 deltaedit \
        --precision fp16 --backend tensorrt --out engines/
    python export/build_engines.py --models clip/tiny vqgan/tiny --random-weights --out /tmp/engines
    python export/build_engines.py --for deltaedit --precision fp16 --out engines/
"""

import sys

from editrt.cli_export import main

if __name__ == "__main__":
    sys.exit(main())

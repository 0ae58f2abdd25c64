"""Message codecs between ROS 2 messages and numpy, one module per message family.

``base`` (rejection error and its reasons, message factories, stamps and headers), ``pointcloud``, ``image``
(raw images), ``compressed`` (CompressedImage), ``camera_info``, ``detections`` (2D, 3D, LabelInfo and box
markers), ``entropy`` (entropy profiles, detection uncertainty, fusion weights)
and ``diagnostics``. Every function reads and writes messages by *field name only*, so the same code serves
rclpy messages (the nodes; ``glassbox_ros.converters`` holds the rclpy factory) and rosbags dataclasses (bag
writing and replay). Builders are ``make_<message>(factory, ...)``; ``bind(factory)`` gives them all with the
factory bound. This package imports no ROS package.
"""
from glassbox.msg.base import (REASONS, ArrayFactoryMixin, ConversionError, MessageFactory, NumpyFactoryMixin,
                               RosbagsFactory, copy_header, make_header, make_time, stamp_to_ns)
from glassbox.msg.base import bind as _bind
from glassbox.msg.camera_info import camera_info_topic, camera_model_from_info, make_camera_info
from glassbox.msg.compressed import compressed_to_array, make_compressed_image
from glassbox.msg.detections import (Detections2D, Detections3D, centre_covariance_2d, detection2d_array_to_numpy,
                                     detection3d_array_to_numpy, label_info_to_names, make_box_markers,
                                     make_detection2d_array, make_detection3d_array, make_label_info,
                                     pose_covariance_3d, pose_covariance_from_spreads, quaternion_to_yaw,
                                     yaw_to_quaternion)
from glassbox.msg.diagnostics import make_diagnostic_array, make_diagnostic_status, status_values
from glassbox.msg.entropy import (DetectionUncertainties, EntropyProfileFields, entropy_profile_from_msg,
                                  make_detection_uncertainty_array, make_entropy_profile, make_fusion_weights)
from glassbox.msg.image import (COLOR_ENCODINGS, IMAGE_ENCODINGS, THERMAL_ENCODINGS, array_to_rgb8, color_order,
                                decode_color, decode_thermal, image_to_array, image_to_rgb8, is_compressed,
                                make_image)
from glassbox.msg.pointcloud import (POINTFIELD_DTYPES, cloud_to_xyz, make_pointcloud2, pointcloud2_dtype,
                                     pointcloud2_fields_from_dtype, pointcloud2_to_array, pointcloud2_to_xyz,
                                     pointcloud2_to_xyzi, xyz_to_structured)

#: every builder, by the name ``bind`` gives it (``make_`` dropped)
BUILDERS = (make_header, copy_header, make_time, make_pointcloud2, make_image, make_compressed_image,
            make_camera_info, make_detection3d_array, make_detection2d_array, make_label_info, make_box_markers,
            make_entropy_profile, make_detection_uncertainty_array, make_fusion_weights, make_diagnostic_status,
            make_diagnostic_array)


def bind(factory: MessageFactory):
    """Every builder with ``factory`` bound: ``bind(f).image(arr, "rgb8", header)``, ``.pointcloud2(cloud, h)``."""
    return _bind(factory, BUILDERS)


__all__ = [
    "BUILDERS", "COLOR_ENCODINGS", "IMAGE_ENCODINGS", "POINTFIELD_DTYPES", "REASONS", "THERMAL_ENCODINGS",
    "ArrayFactoryMixin", "ConversionError", "centre_covariance_2d", "DetectionUncertainties", "Detections2D",
    "Detections3D",
    "EntropyProfileFields", "MessageFactory", "NumpyFactoryMixin", "RosbagsFactory", "array_to_rgb8", "bind",
    "camera_info_topic", "camera_model_from_info", "cloud_to_xyz", "color_order", "compressed_to_array",
    "copy_header", "decode_color", "decode_thermal", "detection2d_array_to_numpy", "detection3d_array_to_numpy",
    "entropy_profile_from_msg", "image_to_array", "image_to_rgb8", "is_compressed", "label_info_to_names",
    "make_box_markers", "make_camera_info", "make_compressed_image", "make_detection2d_array",
    "make_detection3d_array", "make_detection_uncertainty_array", "make_diagnostic_array", "make_diagnostic_status",
    "make_entropy_profile", "make_fusion_weights", "make_header", "make_image", "make_label_info",
    "make_pointcloud2", "make_time", "pointcloud2_dtype", "pointcloud2_fields_from_dtype", "pointcloud2_to_array",
    "pointcloud2_to_xyz", "pointcloud2_to_xyzi", "pose_covariance_3d", "pose_covariance_from_spreads", "quaternion_to_yaw", "stamp_to_ns",
    "status_values", "xyz_to_structured", "yaw_to_quaternion",
]

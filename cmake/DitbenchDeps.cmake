# Finds every dependency once and exposes them through the interface target `dit_deps`.

# LibTorch from a PyTorch install: ask the python that has torch where its CMake files are.
if(NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  find_program(DITBENCH_PYTHON NAMES python3 python
               HINTS ${CMAKE_CURRENT_SOURCE_DIR}/.venv/bin NO_DEFAULT_PATH)
  if(NOT DITBENCH_PYTHON)
    find_program(DITBENCH_PYTHON NAMES python3 python)
  endif()
  execute_process(
    COMMAND ${DITBENCH_PYTHON} -c "import torch;print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _torch_rc)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "ditbench: ${DITBENCH_PYTHON} cannot import torch; run scripts/setup.sh "
                        "or pass -DTorch_DIR=<libtorch>/share/cmake/Torch")
  endif()
  list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
endif()
# Torch's CMake adds nvcc -gencode flags from TORCH_CUDA_ARCH_LIST, defaulting to a list that
# starts at sm_50, which CUDA 13's nvcc rejects; our .cu files target Hopper.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "9.0a")
endif()
option(DITBENCH_CPU_ONLY "Link LibTorch's CPU libraries only, even when a CUDA toolkit is present" OFF)
find_package(CUDAToolkit QUIET)
if(CUDAToolkit_FOUND AND NOT DITBENCH_CPU_ONLY)
  find_package(Torch REQUIRED)
else()
  # PyPI's torch is built with CUDA, and its CMake config stops when no CUDA toolkit is installed.
  # Without one, link LibTorch's CPU libraries directly: the CUDA libraries are never loaded and
  # at::hasCUDA() is false, which is all a machine without a toolkit can use anyway.
  find_file(_torch_config TorchConfig.cmake PATHS ${Torch_DIR} $ENV{Torch_DIR} ${_torch_prefix}/Torch
            NO_DEFAULT_PATH)
  if(NOT _torch_config)
    message(FATAL_ERROR "ditbench: TorchConfig.cmake not found (looked in ${_torch_prefix}/Torch)")
  endif()
  get_filename_component(_torch_root "${_torch_config}" DIRECTORY)
  get_filename_component(_torch_root "${_torch_root}/../../.." ABSOLUTE)
  find_library(_torch_cpu_lib torch_cpu PATHS ${_torch_root}/lib NO_DEFAULT_PATH REQUIRED)
  find_library(_c10_lib c10 PATHS ${_torch_root}/lib NO_DEFAULT_PATH REQUIRED)
  set(TORCH_LIBRARIES ${_torch_cpu_lib} ${_c10_lib})
  set(TORCH_CXX_FLAGS -D_GLIBCXX_USE_CXX11_ABI=1)
  file(STRINGS ${_torch_root}/include/torch/headeronly/version.h _torch_version_h
       REGEX "define TORCH_VERSION_(MAJOR|MINOR|PATCH) ")
  string(REGEX REPLACE "[^0-9;]" "" _v "${_torch_version_h}")
  string(REPLACE ";" "." Torch_VERSION "${_v}")
  add_library(dit_torch_cpu INTERFACE)
  target_include_directories(dit_torch_cpu SYSTEM INTERFACE ${_torch_root}/include
                             ${_torch_root}/include/torch/csrc/api/include)
  target_link_libraries(dit_torch_cpu INTERFACE ${TORCH_LIBRARIES})
  set(TORCH_LIBRARIES dit_torch_cpu)
  message(STATUS "ditbench: no CUDA toolkit: LibTorch ${Torch_VERSION} CPU libraries from ${_torch_root}")
endif()
find_package(nlohmann_json 3 REQUIRED)

# CLI11 is header-only: a system install, or the Debian package unpacked into .deps/.
find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp HINTS ${CMAKE_CURRENT_SOURCE_DIR}/.deps/usr/include)
if(NOT CLI11_INCLUDE_DIR)
  message(FATAL_ERROR "ditbench: CLI11 not found (apt-get install libcli11-dev, or unpack it into .deps/)")
endif()

add_library(dit_deps INTERFACE)
target_link_libraries(dit_deps INTERFACE ${TORCH_LIBRARIES} nlohmann_json::nlohmann_json)
target_include_directories(dit_deps INTERFACE ${CLI11_INCLUDE_DIR})
target_compile_options(dit_deps INTERFACE ${TORCH_CXX_FLAGS})

# CUDA: LibTorch's own config enables the CUDA language when it finds a toolkit.
set(DITBENCH_HAS_CUDA OFF)
if(CAFFE2_USE_CUDA OR TARGET torch::cudart)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(DITBENCH_HAS_CUDA ON)
    find_package(CUDAToolkit REQUIRED)
    if(NOT CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "52")
      set(CMAKE_CUDA_ARCHITECTURES 90a)
    endif()
    target_compile_definitions(dit_deps INTERFACE DITBENCH_HAS_CUDA=1)
    target_link_libraries(dit_deps INTERFACE CUDA::cudart)
  endif()
endif()

# The cuDNN frontend (header-only C++ graph API; scripts/fetch-cudnn-frontend.sh unpacks PyPI's
# nvidia-cudnn-frontend into .deps/) with the cuDNN that LibTorch loads: PyPI's nvidia-cudnn wheel
# beside torch in site-packages, else a system install. It builds the cudnn_fp8 attention backend;
# without it that backend says "built without the cuDNN frontend".
option(DITBENCH_CUDNN_FRONTEND "Build cudnn_fp8 attention when the cuDNN frontend and cuDNN are found" ON)
set(DITBENCH_HAS_CUDNN_FRONTEND OFF)
if(DITBENCH_HAS_CUDA AND DITBENCH_CUDNN_FRONTEND)
  set(_cudnn_hints)
  if(TORCH_INSTALL_PREFIX)
    list(APPEND _cudnn_hints ${TORCH_INSTALL_PREFIX}/../nvidia/cudnn)
  endif()
  if(DITBENCH_PYTHON)
    execute_process(
      COMMAND ${DITBENCH_PYTHON} -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"
      OUTPUT_VARIABLE _site OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_site)
      list(APPEND _cudnn_hints ${_site}/nvidia/cudnn)
    endif()
  endif()
  find_path(CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h
            HINTS ${CMAKE_CURRENT_SOURCE_DIR}/.deps/cudnn_frontend/include)
  find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${_cudnn_hints} ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(CUDNN_LIBRARY NAMES libcudnn.so.9 cudnn NAMES_PER_DIR HINTS ${_cudnn_hints} ${CUDAToolkit_LIBRARY_DIR}
               PATH_SUFFIXES lib lib64)
  if(CUDNN_FRONTEND_INCLUDE_DIR AND CUDNN_INCLUDE_DIR AND CUDNN_LIBRARY)
    set(DITBENCH_HAS_CUDNN_FRONTEND ON)
  else()
    message(STATUS "ditbench: cudnn_fp8 attention not built (cuDNN frontend: "
                   "${CUDNN_FRONTEND_INCLUDE_DIR}, cudnn.h: ${CUDNN_INCLUDE_DIR}, libcudnn: ${CUDNN_LIBRARY})")
  endif()
endif()
# CUTLASS (header-only; scripts/fetch-cutlass.sh unpacks PyPI's nvidia-cutlass into .deps/): the
# row-scaled FP8 GEMM kernels of optimizations/quant/fp8_gemm_sm90_*.cu and the attention kernels
# of optimizations/kernels/fmha_sm90*.cu (CUTLASS's Hopper FMHA collectives, hopper_fmha/).
# Without it the GEMMs refuse every product (fp8_dynamic runs at::_scaled_mm) and the
# cutlass_fmha attention backend says it was not built.
option(DITBENCH_CUTLASS "Build the CUTLASS FP8 GEMM kernels when CUTLASS's headers are found" ON)
set(DITBENCH_HAS_CUTLASS OFF)
if(DITBENCH_HAS_CUDA AND DITBENCH_CUTLASS)
  find_path(CUTLASS_INCLUDE_DIR cutlass/gemm/collective/collective_builder.hpp
            HINTS ${CMAKE_CURRENT_SOURCE_DIR}/.deps/cutlass/include)
  if(CUTLASS_INCLUDE_DIR AND EXISTS "${CUTLASS_INCLUDE_DIR}/cutlass/util/packed_stride.hpp"
     AND EXISTS "${CUTLASS_INCLUDE_DIR}/hopper_fmha/kernel/fmha_kernel_builder.hpp")
    set(DITBENCH_HAS_CUTLASS ON)
  else()
    message(STATUS "ditbench: CUTLASS FP8 GEMMs and FMHA not built (CUTLASS headers: "
                   "${CUTLASS_INCLUDE_DIR}; scripts/fetch-cutlass.sh unpacks them)")
  endif()
endif()

# Compiles the sources of `target` that match `pattern` (relative to the source root) against
# CUTLASS (only those files see its headers), defining `definition`=1 in them.
function(dit_use_cutlass target pattern definition)
  if(DITBENCH_HAS_CUTLASS)
    file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${pattern})
    set_source_files_properties(${sources} TARGET_DIRECTORY ${target} PROPERTIES
      INCLUDE_DIRECTORIES "${CUTLASS_INCLUDE_DIR}"
      COMPILE_DEFINITIONS "${definition}=1"
      COMPILE_OPTIONS "--expt-relaxed-constexpr")
  endif()
endfunction()

# Compiles `source` of `target` against the cuDNN frontend (only that file sees its headers).
function(dit_use_cudnn_frontend target source)
  if(DITBENCH_HAS_CUDNN_FRONTEND)
    set_source_files_properties(${source} TARGET_DIRECTORY ${target} PROPERTIES
      INCLUDE_DIRECTORIES "${CUDNN_FRONTEND_INCLUDE_DIR};${CUDNN_INCLUDE_DIR}"
      COMPILE_DEFINITIONS "DITBENCH_HAS_CUDNN_FRONTEND=1;CUDNN_FRONTEND_SKIP_JSON_LIB=1"
      SKIP_PRECOMPILE_HEADERS ON)
    target_link_libraries(${target} PUBLIC ${CUDNN_LIBRARY})
  endif()
endfunction()

set(DITBENCH_HAS_NCCL OFF)
set(DITBENCH_HAS_CUPTI OFF)
set(DITBENCH_HAS_NVTX OFF)
if(DITBENCH_HAS_CUDA)
  # The NCCL that LibTorch itself loads (PyPI's nvidia-nccl beside torch) comes first: one NCCL
  # in the process, and its header matches the library that runs (a system NCCL may be older).
  set(_nccl_hints "")
  if(DITBENCH_PYTHON)
    execute_process(
      COMMAND ${DITBENCH_PYTHON} -c "import nvidia.nccl as n; print(list(n.__path__)[0])"
      OUTPUT_VARIABLE _nccl_py OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_nccl_py AND EXISTS "${_nccl_py}/include/nccl.h")
      set(_nccl_hints "${_nccl_py}")
    endif()
  endif()
  if(_nccl_hints)
    find_path(NCCL_INCLUDE_DIR nccl.h PATHS "${_nccl_hints}/include" NO_DEFAULT_PATH)
    find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 PATHS "${_nccl_hints}/lib" NO_DEFAULT_PATH)
  endif()
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(DITBENCH_HAS_NCCL ON)
    file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_v REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE "[^0-9;]*([0-9]+)[^;]*" "\\1" _nccl_v "${_nccl_v}")
    string(REPLACE ";" "." DITBENCH_NCCL_VERSION "${_nccl_v}")
    message(STATUS "ditbench: NCCL ${DITBENCH_NCCL_VERSION} (${NCCL_LIBRARY})")
    target_include_directories(dit_deps INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(dit_deps INTERFACE ${NCCL_LIBRARY})
    target_compile_definitions(dit_deps INTERFACE DITBENCH_HAS_NCCL=1)
  endif()
  if(TARGET CUDA::cupti)
    set(DITBENCH_HAS_CUPTI ON)
    target_link_libraries(dit_deps INTERFACE CUDA::cupti)
    target_compile_definitions(dit_deps INTERFACE DITBENCH_HAS_CUPTI=1)
  endif()
  find_path(NVTX3_INCLUDE_DIR nvtx3/nvToolsExt.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  if(NVTX3_INCLUDE_DIR)
    set(DITBENCH_HAS_NVTX ON)
    target_include_directories(dit_deps INTERFACE ${NVTX3_INCLUDE_DIR})
    target_compile_definitions(dit_deps INTERFACE DITBENCH_HAS_NVTX=1)
  endif()
endif()

# Frame and video I/O (Debian packages), optional.
set(DITBENCH_HAS_OPENCV OFF)
find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
if(NOT OpenCV_FOUND)
  # Debian ships OpenCVConfig.cmake only in libopencv-dev, which pulls every OpenCV module (VTK,
  # contrib, dnn); the three -dev packages we install carry the headers and libraries.
  find_path(OpenCV_CORE_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
  find_library(OpenCV_CORE_LIBRARY opencv_core)
  find_library(OpenCV_IMGPROC_LIBRARY opencv_imgproc)
  find_library(OpenCV_IMGCODECS_LIBRARY opencv_imgcodecs)
  if(OpenCV_CORE_INCLUDE_DIR AND OpenCV_CORE_LIBRARY AND OpenCV_IMGPROC_LIBRARY
     AND OpenCV_IMGCODECS_LIBRARY)
    set(OpenCV_FOUND TRUE)
    set(OpenCV_INCLUDE_DIRS ${OpenCV_CORE_INCLUDE_DIR})
    set(OpenCV_LIBS ${OpenCV_IMGCODECS_LIBRARY} ${OpenCV_IMGPROC_LIBRARY} ${OpenCV_CORE_LIBRARY})
  endif()
endif()
if(OpenCV_FOUND)
  set(DITBENCH_HAS_OPENCV ON)
  target_link_libraries(dit_deps INTERFACE ${OpenCV_LIBS})
  target_include_directories(dit_deps INTERFACE ${OpenCV_INCLUDE_DIRS})
  target_compile_definitions(dit_deps INTERFACE DITBENCH_HAS_OPENCV=1)
endif()
set(DITBENCH_HAS_FFMPEG OFF)
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(FFMPEG QUIET IMPORTED_TARGET libavformat libavcodec libavutil libswscale)
  if(FFMPEG_FOUND)
    set(DITBENCH_HAS_FFMPEG ON)
    target_link_libraries(dit_deps INTERFACE PkgConfig::FFMPEG)
    target_compile_definitions(dit_deps INTERFACE DITBENCH_HAS_FFMPEG=1)
  endif()
endif()

find_package(GTest QUIET)
find_package(benchmark QUIET)
set(DITBENCH_HAS_BENCHMARK ${benchmark_FOUND})

# Build facts for `ditbench --version` and the environment block of every record.
# A tree without .git of its own (sent to a GPU machine, or exported by prepare-device.sh
# --snapshot inside another checkout) carries its commit in .deps/git-commit.
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/.git)
  execute_process(COMMAND git -C ${CMAKE_CURRENT_SOURCE_DIR} rev-parse --short=12 HEAD
                  OUTPUT_VARIABLE DITBENCH_GIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
elseif(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/.deps/git-commit)
  file(STRINGS ${CMAKE_CURRENT_SOURCE_DIR}/.deps/git-commit DITBENCH_GIT LIMIT_COUNT 1)
endif()
if(NOT DITBENCH_GIT)
  set(DITBENCH_GIT "unknown")
endif()
foreach(_f CUDA NCCL CUPTI NVTX OPENCV FFMPEG CUTLASS)
  if(DITBENCH_HAS_${_f})
    set(DITBENCH_HAS_${_f}_INT true)
  else()
    set(DITBENCH_HAS_${_f}_INT false)
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/build_info.h.in ${CMAKE_BINARY_DIR}/generated/build_info.h @ONLY)
target_include_directories(dit_deps INTERFACE ${CMAKE_BINARY_DIR}/generated)

# One precompiled header for LibTorch, built once and reused by every target.
add_library(dit_pch STATIC ${CMAKE_CURRENT_LIST_DIR}/empty.cpp)
target_link_libraries(dit_pch PUBLIC dit_deps)
if(DITBENCH_PCH)
  target_precompile_headers(dit_pch PUBLIC
    <torch/nn/module.h> <torch/nn/modules/container/modulelist.h> <ATen/ATen.h>
    <nlohmann/json.hpp> <string> <vector> <map> <memory> <optional> <functional>)
endif()
function(dit_use_pch target)
  if(DITBENCH_PCH)
    target_precompile_headers(${target} REUSE_FROM dit_pch)
  endif()
endfunction()

message(STATUS "ditbench: CUDA=${DITBENCH_HAS_CUDA} NCCL=${DITBENCH_HAS_NCCL} CUPTI=${DITBENCH_HAS_CUPTI} "
               "NVTX=${DITBENCH_HAS_NVTX} cuDNN-frontend=${DITBENCH_HAS_CUDNN_FRONTEND} CUTLASS=${DITBENCH_HAS_CUTLASS} OpenCV=${DITBENCH_HAS_OPENCV} FFmpeg=${DITBENCH_HAS_FFMPEG} "
               "GTest=${GTest_FOUND} benchmark=${benchmark_FOUND}")

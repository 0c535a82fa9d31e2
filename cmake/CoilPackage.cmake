# What `cmake --install` puts next to the libraries so that other programs
# can build against coil: a pkg-config file and a CMake package.
#
#   pkg-config --static --cflags --libs coil   (the libraries are static)
#   find_package(coil) + target_link_libraries(app PRIVATE coil::http)
#
# Both are relocatable: they find the prefix from where they were installed,
# so `cmake --install build --prefix /any/where` works without reconfiguring.
include(CMakePackageConfigHelpers)

set(COIL_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/coil")

install(EXPORT coilTargets NAMESPACE coil:: DESTINATION "${COIL_CMAKE_DIR}")

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/coilConfig.cmake.in"
  "${CMAKE_CURRENT_BINARY_DIR}/coilConfig.cmake"
  INSTALL_DESTINATION "${COIL_CMAKE_DIR}")
# 0.x: a newer minor may break the API, so only the same minor is compatible.
write_basic_package_version_file(
  "${CMAKE_CURRENT_BINARY_DIR}/coilConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${CMAKE_CURRENT_BINARY_DIR}/coilConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/coilConfigVersion.cmake"
  DESTINATION "${COIL_CMAKE_DIR}")

# coil.pc: the prefix is computed from the file's own place (${pcfiledir}).
set(COIL_PC_DIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
file(RELATIVE_PATH COIL_PC_TO_PREFIX "/prefix/${COIL_PC_DIR}" "/prefix")
string(REGEX REPLACE "/$" "" COIL_PC_TO_PREFIX "${COIL_PC_TO_PREFIX}")
if(TARGET coil_http)
  set(COIL_PC_LIBS "-lcoil_http -lcoil_llhttp -lcoil_runtime")
else()
  set(COIL_PC_LIBS "-lcoil_runtime")
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/coil.pc.in" "${CMAKE_CURRENT_BINARY_DIR}/coil.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/coil.pc" DESTINATION "${COIL_PC_DIR}")

install(FILES
  "${PROJECT_SOURCE_DIR}/man/coil-proxy.1"
  "${PROJECT_SOURCE_DIR}/man/coil-doctor.1"
  DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")

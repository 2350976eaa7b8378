# ccgw_add_plugin(NAME <name> SOURCES <src...> [LIBRARIES <lib...>] [NO_INSTALL])
#
# Declares option CCGW_PLUGIN_<NAME> (ON by default) and, when it is on, a
# MODULE library <name>.so in build/lib/ccgw/plugins built with
# -fvisibility=hidden: the only exported symbol is the descriptor.
# NO_INSTALL is for test plugins (tests/plugins) that never ship.
function(ccgw_add_plugin)
  cmake_parse_arguments(P "NO_INSTALL" "NAME;OUTPUT_DIR" "SOURCES;LIBRARIES" ${ARGN})
  string(TOUPPER "${P_NAME}" upper)
  string(REPLACE "-" "_" upper "${upper}")
  if(NOT P_NO_INSTALL)
    option(CCGW_PLUGIN_${upper} "Build the ${P_NAME} plugin" ON)
    if(NOT CCGW_PLUGIN_${upper})
      return()
    endif()
  endif()
  set(target ccgw_plugin_${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
  if(NOT P_OUTPUT_DIR)
    set(P_OUTPUT_DIR ${CCGW_PLUGIN_OUTPUT_DIR})
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME "${P_NAME}"
    LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIR}
    C_VISIBILITY_PRESET hidden)
  target_link_libraries(${target} PRIVATE ccgw::sdk ccgw_warnings ccgw_sanitize ${P_LIBRARIES})
  if(NOT P_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${CCGW_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
